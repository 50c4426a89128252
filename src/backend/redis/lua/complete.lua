
-- Settles one finished task (prepended: common.lua, fence.lua, settle.lua, and put_result.lua
-- wrapped as the function store_result, so its KEYS and ARGV are this script's): stores the
-- result exactly as put_result.lua does, then acks the delivery exactly as ack.lua does when the
-- result is stored, or when the chunk needs none from this delivery (stored earlier, job
-- cancelled). Both in one script, so a result is never acked before it is stored, and a refused
-- result leaves its lease untouched. A batch of tasks is one pipeline of these scripts: one round
-- trip, each item fenced by its own lease.
-- Returns what put_result.lua returns.
local outcome = store_result()
if outcome[1] >= 0 then
  local group, stream_index, id = ARGV[5], tonumber(ARGV[6]), ARGV[7]
  local job, chunk, worker, nonce = ARGV[1], ARGV[2], ARGV[8], ARGV[9]
  local stream = ({ KEYS[5], KEYS[6], KEYS[7] })[stream_index]
  if holds(stream, group, stream_index, id, worker, job, chunk, nonce) then
    unfence(job, stream_index, id)
    drop_entry(stream, group, id)
    redis.call('HDEL', job_key(job, 'tasks'), chunk)
    redis.call('HDEL', job_key(job, 'chunks'), chunk)
  end
end
return outcome
