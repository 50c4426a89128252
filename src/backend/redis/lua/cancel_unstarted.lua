-- Removes a job's tasks and input only if nothing of it started: the job is not finished, no chunk
-- has a stored result, and no task was ever delivered. A task leased now sits in the group's
-- pending list; one leased before and since returned or reclaimed came back as a new entry with
-- attempt > 1 (requeue in common.lua); one acked left a result. Being one script, no lease can
-- come between the check and the removal.
-- KEYS: the three task streams, job:{id}:tasks, job:{id}:chunks, job:{id}:fences,
-- job:{id}:results, job:{id}:status. ARGV: group.
-- Returns 1 if the tasks were removed, 0 if the job started (nothing changed).
local group = ARGV[1]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local status = redis.call('GET', KEYS[8])
if (status and FINISHED[status]) or redis.call('HLEN', KEYS[7]) > 0 then
  return 0
end
local refs = redis.call('HGETALL', KEYS[4])
local entries = {}
for i = 2, #refs, 2 do
  local stream_index, id = string.match(refs[i], '^(%d)/(.+)$')
  local stream = streams[tonumber(stream_index)]
  -- An entry set aside (ASIDE, see lease.lua) was read but never delivered to a worker.
  local pending = redis.call('XPENDING', stream, group, id, id, 1)
  if #pending > 0 and pending[1][2] ~= ASIDE then
    return 0
  end
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry > 0 and (tonumber(fields_of(entry[1][2]).attempt) or 1) > 1 then
    return 0
  end
  entries[#entries + 1] = { stream, id }
end
for _, entry in ipairs(entries) do
  drop_entry(entry[1], group, entry[2])
end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
return 1
