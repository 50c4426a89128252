-- Appends a running command task's new output to its tail (KEYS[1], a hash) and indexes the
-- chunk in the job's live set (KEYS[2]); both expire unless the next extension comes.
-- ARGV: token, worker, now, out offset, out text, err offset, err text, max bytes kept per
-- stream, ttl ms, chunk, most live tasks per job.
-- A tail belongs to one delivery: another token starts it afresh. Text already received is
-- skipped; a gap restarts the stream's tail where the piece starts.
local key, index = KEYS[1], KEYS[2]
local token, worker, now = ARGV[1], ARGV[2], ARGV[3]
local max, ttl, chunk = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
if redis.call('HGET', key, 'token') ~= token then
  if redis.call('SISMEMBER', index, chunk) == 0 and redis.call('SCARD', index) >= tonumber(ARGV[11]) then
    return 0
  end
  redis.call('DEL', key)
  redis.call('HSET', key, 'token', token, 'worker', worker, 'started_at', now,
    'out_off', 0, 'out', '', 'err_off', 0, 'err', '')
end
local function append(off_field, text_field, at, text)
  local off = tonumber(redis.call('HGET', key, off_field))
  local cur = redis.call('HGET', key, text_field)
  local stop = off + #cur
  if at > stop then
    off, cur = at, text
  elseif at + #text > stop then
    cur = cur .. string.sub(text, stop - at + 1)
  end
  if #cur > max then
    -- Keep the last `max` bytes, starting on a character's first byte (not 0x80-0xBF).
    local cut = #cur - max
    while cut < #cur do
      local byte = string.byte(cur, cut + 1)
      if byte < 128 or byte >= 192 then break end
      cut = cut + 1
    end
    cur = string.sub(cur, cut + 1)
    off = off + cut
  end
  redis.call('HSET', key, off_field, off, text_field, cur)
end
append('out_off', 'out', tonumber(ARGV[4]), ARGV[5])
append('err_off', 'err', tonumber(ARGV[6]), ARGV[7])
redis.call('HSET', key, 'updated_at', now)
redis.call('PEXPIRE', key, ttl)
redis.call('SADD', index, chunk)
redis.call('PEXPIRE', index, ttl)
return 1
