-- Gives up worker:{id}:owner (KEYS[1]) if the claim value ARGV[1] still holds it, so the id is
-- free at once rather than when the claim lapses. Returns 1 if released, 0 if held by another.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
