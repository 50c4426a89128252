-- Marks the end of each job as logged, once: field end_logged of its info hash (KEYS, one per
-- job). A job no longer stored is left alone (no stray hash) and reads as marked.
-- Returns, per job, 1 if its end was not marked until now, else 0.
local fresh = {}
for i, info in ipairs(KEYS) do
  if redis.call('EXISTS', info) == 1 then
    fresh[i] = redis.call('HSETNX', info, 'end_logged', 1)
  else
    fresh[i] = 0
  end
end
return fresh
