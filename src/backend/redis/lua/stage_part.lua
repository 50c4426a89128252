-- Stages one part of a large result payload under the delivery that computed it, refused unless
-- that delivery is the writer's (fence.lua). Parts arrive in order; a retried upload starts again
-- at part 0. The staging list expires unless a commit (put_result.lua) renames it.
-- KEYS: the three task streams, the staging list, the refusal counters.
-- ARGV: group, stream index, entry id, worker, job, chunk, nonce, part, bytes, ttl ms.
-- Returns {1, ''} if staged, {-2, reason} if refused, {-3, what} if out of order.
local group, stream_index, id, worker = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local job, chunk, nonce, part = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local f, reason = fence(streams, group, stream_index, id, worker, job, chunk, nonce, KEYS[5])
if not f then
  return { -2, reason }
end
if part == 0 then
  redis.call('DEL', KEYS[4])
end
local staged = redis.call('LLEN', KEYS[4])
if part == staged then
  redis.call('RPUSH', KEYS[4], ARGV[9])
elseif part < staged then
  redis.call('LSET', KEYS[4], part, ARGV[9])
else
  return { -3, 'part ' .. part .. ' arrived after only ' .. staged .. ' parts' }
end
redis.call('PEXPIRE', KEYS[4], ARGV[10])
return { 1, '' }
