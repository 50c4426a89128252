-- Stores a chunk's result if it is the first for that chunk and the job is not cancelled, and
-- only from the worker holding the chunk's current delivery, with a match count the task can
-- hold (fence.lua). Only a first write moves the job's stats, so they always equal the sum over
-- stored results however often a chunk is redelivered; the job's status then follows
-- (settle.lua). The payload lands in the result's parts list: inline, or by renaming the parts
-- the delivery staged, so a result's parts become visible together with it.
-- KEYS: job:{id}:status, job:{id}:stats, job:{id}:info, job:{id}:results, the three task
-- streams, the delivery's staging list, the result's parts list, the refusal counters, the
-- worker's completed-task counts, its task times of this kind, the index of such workers.
-- ARGV: job, chunk, header JSON, matches, group, stream index, entry id, worker, nonce,
-- parts (0: the payload is the next argument), inline payload, kind, seconds spent ('' if
-- unknown), task times kept, '1' if the payload failed its kind's check ('' if it passed).
-- Returns {1, ''} if stored, {0, ''} if not the first or the job was cancelled, {-1, ''} if no
-- job, {-2, reason} if refused, {-3, what} if the staged parts do not match the count.
local job, chunk, header, matches = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local group, stream_index, id, worker, nonce = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]
local parts = tonumber(ARGV[10])
local streams = all_streams(KEYS[5], KEYS[6], KEYS[7])
local staging, parts_key, refused = KEYS[8], KEYS[9], KEYS[10]
local status = redis.call('GET', KEYS[1])
if status == 'cancelled' then
  redis.call('DEL', staging)
  return { 0, '' }
end
local f, reason = fence(streams, group, stream_index, id, worker, job, chunk, nonce, refused)
if not f then
  return { -2, reason }
end
if f.max_matches and tonumber(matches) > tonumber(f.max_matches) then
  redis.call('HINCRBY', refused, 'out_of_range', 1)
  return { -2, 'out_of_range' }
end
if ARGV[15] == '1' then
  redis.call('DEL', staging)
  redis.call('HINCRBY', refused, 'bad_payload', 1)
  return { -2, 'bad_payload' }
end
if not status then
  return { -1, '' }
end
if parts > 0 and redis.call('LLEN', staging) ~= parts then
  return { -3, parts .. ' parts announced, ' .. redis.call('LLEN', staging) .. ' staged' }
end
if redis.call('HSETNX', KEYS[4], chunk, header) == 0 then
  redis.call('DEL', staging)
  return { 0, '' }
end
redis.call('DEL', parts_key)
if parts > 0 then
  redis.call('RENAME', staging, parts_key)
  redis.call('PERSIST', parts_key)
else
  redis.call('RPUSH', parts_key, ARGV[11])
end
redis.call('HINCRBY', KEYS[2], 'chunks_processed', 1)
redis.call('HINCRBY', KEYS[11], ARGV[12], 1)
redis.call('SADD', KEYS[13], worker)
if ARGV[13] ~= '' then
  redis.call('LPUSH', KEYS[12], ARGV[13])
  redis.call('LTRIM', KEYS[12], 0, tonumber(ARGV[14]) - 1)
end
-- Saturate rather than overflow: past 2^53 a double no longer counts exactly anyway.
local cap = 9007199254740992
local total = tonumber(redis.call('HGET', KEYS[2], 'total_matches')) or 0
if tonumber(matches) > cap - total then
  redis.call('HSET', KEYS[2], 'total_matches', string.format('%.0f', cap))
else
  redis.call('HINCRBY', KEYS[2], 'total_matches', matches)
end
settle_status()
return { 1, '' }
