-- Resets a lease's idle time (XCLAIM to its own holder with JUSTID, which does not count as a
-- delivery), so the visibility timeout runs from now. Refused unless the worker holds the
-- delivery with the nonce its lease carries.
-- KEYS: the three task streams. ARGV: group, stream index, entry id, worker id, job, chunk,
-- nonce.
-- Returns 1 if extended, 0 if the lease is gone.
local group, stream_index, id, worker = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local job, chunk, nonce = ARGV[5], ARGV[6], ARGV[7]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
if not holds(streams[stream_index], group, stream_index, id, worker, job, chunk, nonce) then
  return 0
end
redis.call('XCLAIM', streams[stream_index], group, worker, 0, id, 'JUSTID')
return 1
