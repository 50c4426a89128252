-- Holds worker:{id}:owner (KEYS[1]) for the claim value ARGV[1] for ARGV[2] ms: taken if free,
-- renewed if already ours, taken over if its holder is exactly ARGV[4] (a holder the claimant
-- proved dead; empty for none), refused while anyone else holds it. A holder is also stamped in
-- the workers:seen sorted set (KEYS[2], member ARGV[3]) with Redis' own clock, so the master
-- counts idle live workers; entries older than an hour are dropped to bound the set.
-- Returns false (nil) once held, else the current holder's claim value.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] or (ARGV[4] ~= '' and holder == ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now_ms, ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - 3600000)
  return false
end
return holder
