-- Resets a lease's idle time (XCLAIM to its own holder with JUSTID, which does not count as a
-- delivery), so the visibility timeout runs from now. Refused if the worker no longer holds it.
-- KEYS: the entry's stream. ARGV: group, entry id, worker id.
-- Returns 1 if extended, 0 if the lease is gone.
local stream, group, id, worker = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not is_leased(stream, group, id, worker) then
  return 0
end
redis.call('XCLAIM', stream, group, worker, 0, id, 'JUSTID')
return 1
