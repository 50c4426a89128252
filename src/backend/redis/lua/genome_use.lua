-- A stored genome's record, now used by a job: looked up and marked in one step, so a removal
-- either ran before (nil: the job uploads again) or sees the job and keeps the genome.
-- ARGV: hash, job, now.
local record = 'genome:' .. ARGV[1]
if redis.call('EXISTS', record) == 0 then return false end
redis.call('SADD', record .. ':jobs', ARGV[2])
redis.call('HSET', record, 'last_used', ARGV[3])
return redis.call('HGETALL', record)
