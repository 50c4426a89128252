-- Takes back every lease idle for longer than the visibility timeout (XAUTOCLAIM), queueing each
-- again as a retry or burying it (requeue in common.lua). A live worker on a long task keeps its
-- lease out of reach by extending it. Entries set aside for a worker that may take them (ASIDE,
-- see lease.lua) are nobody's lease: they go back aside untouched.
-- KEYS: the three task streams, the dead-letter stream.
-- ARGV: group, reclaimer consumer, visibility timeout in ms, max attempts, dead-letter cap.
-- Returns how many leases were taken back.
local group, reclaimer, min_idle = ARGV[1], ARGV[2], ARGV[3]
local max_attempts, dead_cap = tonumber(ARGV[4]), ARGV[5]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local reclaimed = 0
for stream_index = 1, #streams do
  local stream = streams[stream_index]
  local aside = {}
  if stream_index > 3 then
    local start = '-'
    repeat
      local page = redis.call('XPENDING', stream, group, start, '+', 1000, ASIDE)
      for _, pending in ipairs(page) do
        aside[pending[1]] = true
        start = '(' .. pending[1]
      end
    until #page < 1000
  end
  local cursor = '0-0'
  repeat
    local reply = redis.call('XAUTOCLAIM', stream, group, reclaimer, min_idle, cursor, 'COUNT', 100)
    cursor = reply[1]
    for _, entry in ipairs(reply[2]) do
      if aside[entry[1]] then
        redis.call('XCLAIM', stream, group, ASIDE, 0, entry[1], 'JUSTID')
      else
        local f = fields_of(entry[2])
        local err = 'lease of chunk ' .. f.chunk .. ' expired on attempt ' .. f.attempt
        requeue(streams, stream_index, group, entry[1], f, err, max_attempts, KEYS[4], dead_cap)
        reclaimed = reclaimed + 1
      end
    end
  until cursor == '0-0'
end
return reclaimed
