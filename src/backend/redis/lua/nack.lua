-- Returns a failed delivery: retried as a new entry with attempt + 1, or buried after
-- max_attempts (see requeue in common.lua).
-- KEYS: the three task streams, the dead-letter stream.
-- ARGV: group, stream index, entry id, worker id, error, max attempts, dead-letter cap, job,
-- chunk, the lease's nonce, how long (ms) a failed command task is kept from this worker.
-- Returns the next attempt, 0 if dead-lettered, -1 if the lease was stale or needs no retry.
local group, stream_index, id, worker = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local err, max_attempts, dead_cap = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local job, chunk, nonce, avoid_ms = ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11]) or 0
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local stream = streams[stream_index]
if not holds(stream, group, stream_index, id, worker, job, chunk, nonce) then
  return -1
end
local entry = redis.call('XRANGE', stream, id, id)
if #entry == 0 then
  redis.call('XACK', stream, group, id)
  return -1
end
return requeue(streams, stream_index, group, id, fields_of(entry[1][2]), err, max_attempts, KEYS[4],
  dead_cap, worker, avoid_ms)
