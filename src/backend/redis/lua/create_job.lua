-- Records a new job unless one with the same id exists (a retried submit).
-- KEYS: job:{id}:status, job:{id}:info, job:{id}:stats, the jobs index.
-- ARGV: id, kind, spec JSON, created_at, status, total_chunks, error ('' for none),
-- finished_at ('' for none), summary, priority.
-- Returns 1 if created, 0 if the job existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local id, kind, spec, created_at, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local total_chunks, err, finished_at = ARGV[6], ARGV[7], ARGV[8]
redis.call('SET', KEYS[1], status)
redis.call('HSET', KEYS[2], 'kind', kind, 'spec', spec, 'created_at', created_at, 'summary', ARGV[9],
  'priority', ARGV[10])
if err ~= '' then
  redis.call('HSET', KEYS[2], 'error', err)
end
if finished_at ~= '' then
  redis.call('HSET', KEYS[2], 'finished_at', finished_at)
end
redis.call('HSET', KEYS[3], 'total_chunks', total_chunks, 'chunks_processed', 0, 'total_matches', 0)
redis.call('ZADD', KEYS[4], created_at, id)
return 1
