-- Returns to the queue every lease a worker holds except the ones it names: after a lost
-- connection, a lease whose reply never reached the worker is in its pending list all the same.
-- XPENDING pages through the worker's entries; each one not named is moved to the reclaimer and
-- queued again as a retry (or buried), as reclaim_worker.lua does for a dead worker.
-- KEYS: the three task streams, the dead-letter stream.
-- ARGV: group, worker id, reclaimer consumer, max attempts, dead-letter cap, then the entries
-- the worker holds as "{stream index}/{entry id}".
-- Returns how many leases were returned.
local group, worker, reclaimer = ARGV[1], ARGV[2], ARGV[3]
local max_attempts, dead_cap = tonumber(ARGV[4]), ARGV[5]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local held = {}
for i = 6, #ARGV do
  held[ARGV[i]] = true
end
local err = 'worker ' .. worker .. ' never received the task (its connection was lost)'
local released = 0
for stream_index = 1, #streams do
  local stream = streams[stream_index]
  local start = '-'
  while true do
    local pending = redis.call('XPENDING', stream, group, start, '+', 100, worker)
    if #pending == 0 then
      break
    end
    for _, p in ipairs(pending) do
      local id = p[1]
      if not held[entry_ref(stream_index, id)] then
        local claimed = redis.call('XCLAIM', stream, group, reclaimer, 0, id)
        if #claimed > 0 and claimed[1] then
          requeue(streams, stream_index, group, id, fields_of(claimed[1][2]), err, max_attempts, KEYS[4], dead_cap)
          released = released + 1
        else
          redis.call('XACK', stream, group, id)
        end
      end
    end
    start = '(' .. pending[#pending][1]
  end
end
return released
