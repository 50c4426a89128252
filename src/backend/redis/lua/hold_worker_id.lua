-- Holds worker:{id}:owner for the process ARGV[1] for ARGV[2] ms: taken if free, renewed if
-- already ours, refused (0) while another live process holds it.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
