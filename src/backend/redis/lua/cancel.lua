-- Removes a cancelled job's tasks, queued or leased (a late ack of a leased one is then stale),
-- and frees all its input bytes.
-- KEYS: the three task streams, job:{id}:tasks, job:{id}:chunks, job:{id}:fences. ARGV: group.
-- Returns how many queued (not leased) tasks were removed.
local group = ARGV[1]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local refs = redis.call('HGETALL', KEYS[4])
local removed = 0
for i = 2, #refs, 2 do
  local stream_index, id = string.match(refs[i], '^(%d)/(.+)$')
  local stream = streams[tonumber(stream_index)]
  if not is_leased(stream, group, id) then
    removed = removed + 1
  end
  drop_entry(stream, group, id)
end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
return removed
