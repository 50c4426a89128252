-- Stores a chunk's result if it is the first for that chunk and the job is not cancelled. Only
-- a first write moves the job's stats, so they always equal the sum over stored results however
-- often a chunk is redelivered; the job's status then follows (settle.lua).
-- KEYS: job:{id}:status, job:{id}:stats, job:{id}:info, job:{id}:results.
-- ARGV: chunk, result JSON, matches.
-- Returns 1 if stored, 0 if refused (a result exists or the job was cancelled), -1 if no job.
local status = redis.call('GET', KEYS[1])
if not status then
  return -1
end
if status == 'cancelled' then
  return 0
end
if redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'chunks_processed', 1)
redis.call('HINCRBY', KEYS[2], 'total_matches', ARGV[3])
settle_status()
return 1
