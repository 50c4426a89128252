-- Takes back every lease a (dead) worker holds: XPENDING finds them, XCLAIM moves each to the
-- reclaimer, and requeue (common.lua) queues it again as a retry or buries it. The worker's
-- consumer is then deleted so dead consumers do not accumulate.
-- KEYS: the three task streams, the dead-letter stream.
-- ARGV: group, worker id, reclaimer consumer, max attempts, dead-letter cap.
-- Returns how many leases were taken back.
local group, worker, reclaimer = ARGV[1], ARGV[2], ARGV[3]
local max_attempts, dead_cap = tonumber(ARGV[4]), ARGV[5]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local err = 'worker ' .. worker .. ' died while holding the task'
local reclaimed = 0
for stream_index = 1, #streams do
  local stream = streams[stream_index]
  while true do
    local pending = redis.call('XPENDING', stream, group, '-', '+', 100, worker)
    if #pending == 0 then
      break
    end
    for _, p in ipairs(pending) do
      local id = p[1]
      local claimed = redis.call('XCLAIM', stream, group, reclaimer, 0, id)
      if #claimed > 0 and claimed[1] then
        requeue(streams, stream_index, group, id, fields_of(claimed[1][2]), err, max_attempts, KEYS[4], dead_cap)
        reclaimed = reclaimed + 1
      else
        redis.call('XACK', stream, group, id)
      end
    end
  end
  redis.call('XGROUP', 'DELCONSUMER', stream, group, worker)
end
return reclaimed
