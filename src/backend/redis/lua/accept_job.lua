-- Records a job's chunk count once its input is fully received and queued; an uploading job
-- becomes pending (a job that already finished or progressed keeps its status).
-- KEYS: job:{id}:status, job:{id}:stats. ARGV: total chunks.
-- Returns 1, or -1 if there is no such job.
local status = redis.call('GET', KEYS[1])
if not status then
  return -1
end
redis.call('HSET', KEYS[2], 'total_chunks', ARGV[1])
if status == 'uploading' then
  redis.call('SET', KEYS[1], 'pending')
end
return 1
