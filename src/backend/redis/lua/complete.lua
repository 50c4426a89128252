-- Settles a batch of finished tasks in one script: each result is stored (store_result in
-- results.lua), then its delivery is acked as ack.lua acks it when the result is stored, or when
-- the chunk needs none from this delivery (stored earlier, job cancelled). A result is never
-- acked before it is stored, and a refused result leaves its lease untouched: each item is
-- fenced by its own lease. The chunk's task ref goes at once, so a repeat of an item later in
-- the batch finds its delivery ended; the rest of each ack (pending entry, stream entry, fence,
-- input bytes) is done once per stream and per job after the batch, as are the stats and each
-- job's status.
-- KEYS and ARGV: as results.lua takes them, the payloads inline (parts 0).
-- Returns one store_result reply per item, in order.
local replies = {}
local acked, unfenced, freed = {}, {}, {}
local function add(lists, key, ...)
  local list = lists[key] or {}
  lists[key] = list
  for _, value in ipairs({ ... }) do
    list[#list + 1] = value
  end
end
for _, item in ipairs(result_items()) do
  local outcome = store_result(item)
  if outcome[1] >= 0 then
    local stream_index, id, job, chunk = item.stream_index, item.id, item.job, item.chunk
    -- A stored result (1) passed the fence just now, in this script: the delivery is held.
    if outcome[1] == 1
      or holds(streams[stream_index], group, stream_index, id, item.worker, job, chunk, item.nonce) then
      redis.call('HDEL', job_key(job, 'tasks'), chunk)
      local ref = entry_ref(stream_index, id)
      add(acked, stream_index, id)
      add(unfenced, job, ref, fence_max_field(ref))
      add(freed, job, chunk)
    end
  end
  replies[#replies + 1] = outcome
end
for stream_index, ids in pairs(acked) do
  redis.call('XACK', streams[stream_index], group, unpack(ids))
  redis.call('XDEL', streams[stream_index], unpack(ids))
end
for job, fields in pairs(unfenced) do
  redis.call('HDEL', job_key(job, 'fences'), unpack(fields))
end
for job, chunks in pairs(freed) do
  redis.call('HDEL', job_key(job, 'chunks'), unpack(chunks))
end
flush_tally()
return replies
