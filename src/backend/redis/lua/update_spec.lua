-- Replaces a job's kind-specific spec (what only the end of its upload tells).
-- KEYS: job:{id}:status, job:{id}:info. ARGV: spec JSON.
-- Returns 1, or -1 if there is no such job.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSET', KEYS[2], 'spec', ARGV[1])
return 1
