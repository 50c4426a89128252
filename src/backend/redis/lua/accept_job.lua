-- Records a job's chunk count once its input is fully received and queued: an uploading job
-- becomes pending, or at once processing or completed if results arrived meanwhile (settle.lua).
-- KEYS: job:{id}:status, job:{id}:stats, job:{id}:info. ARGV: total chunks.
-- Returns 1, or -1 if there is no such job.
local status = redis.call('GET', KEYS[1])
if not status then
  return -1
end
redis.call('HSET', KEYS[2], 'total_chunks', ARGV[1])
if status == 'uploading' then
  redis.call('SET', KEYS[1], 'pending')
end
settle_status(KEYS[1], KEYS[2], KEYS[3])
return 1
