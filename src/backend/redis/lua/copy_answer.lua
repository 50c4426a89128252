-- Creates a job as a completed copy of another's answer: its record, its stats and every stored
-- result (header and payload parts), then records it under the result cache key. Only if the
-- source is still completed and the new id is free.
-- KEYS: the cache key's set, the jobs index.
-- ARGV: source id, new id, kind, spec JSON, created_at, total_chunks, finished_at, summary,
-- priority, cache key.
-- Returns 1 if copied, 0 if the new id is taken, -1 if the source is not a completed job.
local function job_key(job, suffix)
  return 'job:' .. job .. ':' .. suffix
end
local source, id = ARGV[1], ARGV[2]
if redis.call('GET', job_key(source, 'status')) ~= 'completed' then
  redis.call('SREM', KEYS[1], source)
  return -1
end
if redis.call('EXISTS', job_key(id, 'status')) == 1 then
  return 0
end
redis.call('SET', job_key(id, 'status'), 'completed')
redis.call('HSET', job_key(id, 'info'), 'kind', ARGV[3], 'spec', ARGV[4], 'created_at', ARGV[5],
  'finished_at', ARGV[7], 'summary', ARGV[8], 'priority', ARGV[9], 'cache_key', ARGV[10])
local stats = redis.call('HMGET', job_key(source, 'stats'), 'chunks_processed', 'total_matches')
redis.call('HSET', job_key(id, 'stats'), 'total_chunks', ARGV[6],
  'chunks_processed', stats[1] or 0, 'total_matches', stats[2] or 0)
local results = redis.call('HGETALL', job_key(source, 'results'))
for i = 1, #results, 2 do
  local chunk, header = results[i], results[i + 1]
  redis.call('HSET', job_key(id, 'results'), chunk, header)
  local parts = redis.call('LRANGE', job_key(source, 'result:' .. chunk), 0, -1)
  for _, part in ipairs(parts) do
    redis.call('RPUSH', job_key(id, 'result:' .. chunk), part)
  end
end
redis.call('ZADD', KEYS[2], ARGV[5], id)
redis.call('SADD', KEYS[1], id)
return 1
