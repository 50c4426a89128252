-- Moves a job to a new status, unless it already finished (completed, failed and cancelled are
-- final). A finishing status records the finish time; an error is recorded when given.
-- KEYS: job:{id}:status, job:{id}:info. ARGV: new status, error ('' for none).
-- Returns 1 if changed, 0 if the job had finished, -1 if there is no such job.
local FINAL = { completed = true, failed = true, cancelled = true }
local status = redis.call('GET', KEYS[1])
if not status then
  return -1
end
if FINAL[status] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], 'error', ARGV[2])
end
if FINAL[ARGV[1]] then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'finished_at', string.format('%d.%06d', t[1], t[2]))
end
return 1
