-- Completes a chunk after its result is stored: removes the acked entry from the pending list
-- and the stream, and frees the chunk's input and its task ref. Only the worker holding the
-- chunk's live delivery, with the nonce its lease carries, may ack it; any other ack (a forged
-- one, or a delivery since reclaimed, whose retry will do the work) changes nothing.
-- KEYS: the three task streams. ARGV: group, stream index, entry id, job, chunk, worker, nonce.
-- Returns 1 if this delivery was held and is now acked, 0 if it was stale.
local group, stream_index, id, job, chunk = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local worker, nonce = ARGV[6], ARGV[7]
local stream = all_streams(KEYS[1], KEYS[2], KEYS[3])[stream_index]
if not holds(stream, group, stream_index, id, worker, job, chunk, nonce) then
  return 0
end
unfence(job, stream_index, id)
drop_entry(stream, group, id)
redis.call('HDEL', job_key(job, 'tasks'), chunk)
redis.call('HDEL', job_key(job, 'chunks'), chunk)
return 1
