-- Completes a chunk after its result is stored: removes the acked entry from the pending list
-- and the stream, frees the chunk's input, and removes a queued retry of the same chunk (left by
-- a reclaim while this delivery was still running), which has nothing left to do. A retry that is
-- already leased keeps its input; its own ack will free it.
-- Only the worker holding the delivery, with the nonce its lease carries, may ack it.
-- KEYS: the three task streams. ARGV: group, stream index, entry id, job, chunk, worker, nonce.
-- Returns 1 if this delivery was still leased, 0 if it was stale (nothing changed).
local group, stream_index, id, job, chunk = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local worker, nonce = ARGV[6], ARGV[7]
local streams = { KEYS[1], KEYS[2], KEYS[3] }
if not holds(streams[tonumber(stream_index)], group, tonumber(stream_index), id, worker, job, chunk, nonce) then
  return 0
end
unfence(job, tonumber(stream_index), id)
local held = redis.call('XACK', streams[tonumber(stream_index)], group, id)
redis.call('XDEL', streams[tonumber(stream_index)], id)
local tasks = job_key(job, 'tasks')
local live = redis.call('HGET', tasks, chunk)
if not live then
  return held
end
if live ~= entry_ref(stream_index, id) then
  local live_index, live_id = string.match(live, '^(%d)/(.+)$')
  local live_stream = streams[tonumber(live_index)]
  if is_leased(live_stream, group, live_id) then
    return held
  end
  drop_entry(live_stream, group, live_id)
end
redis.call('HDEL', tasks, chunk)
redis.call('HDEL', job_key(job, 'chunks'), chunk)
return held
