-- Moves an accepted, unfinished job to processing or completed according to its stored results,
-- so a job completes when its last result lands, with or without a master watching. A command
-- job whose results count failed tasks (its total_matches) fails instead, saying how many.
-- Takes the job's keys job:{id}:status, job:{id}:stats and job:{id}:info.
local function settle_status(status_key, stats_key, info_key)
  local status = redis.call('GET', status_key)
  if status ~= 'pending' and status ~= 'processing' then
    return
  end
  local counts = redis.call('HMGET', stats_key, 'total_chunks', 'chunks_processed')
  local total, done = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
  if done == 0 then
    return
  end
  if done >= total then
    local t = redis.call('TIME')
    local failed = tonumber(redis.call('HGET', stats_key, 'total_matches')) or 0
    if failed > 0 and redis.call('HGET', info_key, 'kind') == 'command' then
      redis.call('SET', status_key, 'failed')
      redis.call('HSET', info_key, 'error', string.format(
        '%d command task(s) failed: `gridwatch results` names them', failed))
    else
      redis.call('SET', status_key, 'completed')
    end
    redis.call('HSET', info_key, 'finished_at', string.format('%d.%06d', t[1], t[2]))
  elseif status ~= 'processing' then
    redis.call('SET', status_key, 'processing')
  end
end

