
-- Settles a batch of finished tasks in one script (prepended: common.lua, fence.lua, settle.lua,
-- and put_result.lua wrapped as the function store_result). For each item, KEYS and ARGV are
-- rebound to that item's keys and arguments, exactly as put_result.lua takes them; the result
-- is stored as put_result.lua stores it, then the delivery is acked as ack.lua acks it when the
-- result is stored, or when the chunk needs none from this delivery (stored earlier, job
-- cancelled). Each job's status is settled once, after the whole batch. A result is never acked before it is stored, and a refused result leaves its lease
-- untouched: each item is fenced by its own lease.
-- KEYS: 13 per item, as put_result.lua's. ARGV: 15 per item, as put_result.lua's (parts 0, the
-- payload inline), then the item count.
-- Returns one put_result.lua reply per item, in order.
local KEYS_PER_ITEM, ARGS_PER_ITEM = 13, 15
local all_keys, all_args = {}, {}
for i = 1, #KEYS do
  all_keys[i] = KEYS[i]
end
for i = 1, #ARGV do
  all_args[i] = ARGV[i]
end
local count = tonumber(all_args[#all_args])
local replies = {}
local settled = {}
for item = 1, count do
  for k = 1, KEYS_PER_ITEM do
    KEYS[k] = all_keys[(item - 1) * KEYS_PER_ITEM + k]
  end
  for a = 1, ARGS_PER_ITEM do
    ARGV[a] = all_args[(item - 1) * ARGS_PER_ITEM + a]
  end
  local outcome = store_result()
  if outcome[1] >= 0 then
    local group, stream_index, id = ARGV[5], tonumber(ARGV[6]), ARGV[7]
    local job, chunk, worker, nonce = ARGV[1], ARGV[2], ARGV[8], ARGV[9]
    local stream = all_streams(KEYS[5], KEYS[6], KEYS[7])[stream_index]
    -- A stored result (1) passed the fence just now, in this script: the delivery is held.
    if outcome[1] == 1 or holds(stream, group, stream_index, id, worker, job, chunk, nonce) then
      unfence(job, stream_index, id)
      drop_entry(stream, group, id)
      redis.call('HDEL', job_key(job, 'tasks'), chunk)
      redis.call('HDEL', job_key(job, 'chunks'), chunk)
    end
  end
  if outcome[1] == 1 and not settled[ARGV[1]] then
    settled[ARGV[1]] = all_streams(KEYS[1], KEYS[2], KEYS[3])
  end
  replies[item] = outcome
end
-- Settle each job that got a result, once (settle.lua reads the job's first three keys).
for _, job_keys in pairs(settled) do
  KEYS[1], KEYS[2], KEYS[3] = job_keys[1], job_keys[2], job_keys[3]
  settle_after_batch()
end
return replies
