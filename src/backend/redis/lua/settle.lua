-- Moves an accepted, unfinished job to processing or completed according to its stored results,
-- so a job completes when its last result lands, with or without a master watching. A command
-- job whose results count failed tasks (its total_matches) fails instead, saying how many.
-- KEYS: job:{id}:status, job:{id}:stats, job:{id}:info.
local function settle_status()
  local status = redis.call('GET', KEYS[1])
  if status ~= 'pending' and status ~= 'processing' then
    return
  end
  local counts = redis.call('HMGET', KEYS[2], 'total_chunks', 'chunks_processed')
  local total, done = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
  if done == 0 then
    return
  end
  if done >= total then
    local t = redis.call('TIME')
    local failed = tonumber(redis.call('HGET', KEYS[2], 'total_matches')) or 0
    if failed > 0 and redis.call('HGET', KEYS[3], 'kind') == 'command' then
      redis.call('SET', KEYS[1], 'failed')
      redis.call('HSET', KEYS[3], 'error', string.format(
        '%d command task(s) failed: `gridwatch results` names them', failed))
    else
      redis.call('SET', KEYS[1], 'completed')
    end
    redis.call('HSET', KEYS[3], 'finished_at', string.format('%d.%06d', t[1], t[2]))
  else
    redis.call('SET', KEYS[1], 'processing')
  end
end

