
-- Leases up to a count of tasks in one script (prepended: common.lua, and lease.lua wrapped as
-- the function lease_one): each delivery exactly as lease.lua makes it, with its own nonce
-- (ARGV[6] is rebound to each in turn), in priority order.
-- KEYS: as lease.lua's. ARGV: as lease.lua's, the count in place of the nonce, then one nonce
-- per task.
-- Returns the lease.lua replies of the tasks leased, in order; or, when none was, the one
-- lease.lua reply saying every stream is drained.
local count = tonumber(ARGV[6])
local nonces = {}
for i = 1, count do
  nonces[i] = ARGV[6 + i]
end
local leased = {}
for i = 1, count do
  ARGV[6] = nonces[i]
  local reply = lease_one()
  if reply[1] == 0 then
    if #leased == 0 then
      return { reply }
    end
    break
  end
  leased[#leased + 1] = reply
end
return leased
