-- Leases the next task for a worker: the oldest undelivered entry of the highest-priority stream
-- that has one. Entries that need no work (their job finished, or their chunk's result is stored
-- by an earlier delivery) are dropped on the way; an entry whose input bytes are missing is
-- buried as poison.
-- KEYS: the three task streams, the dead-letter stream.
-- ARGV: group, consumer (worker id), dead-letter cap, largest input returned inline (bytes),
-- the worker's command slots (0: it runs no command task and never touches the command streams;
-- N: it reads them too, each after the task stream of its priority, and takes command tasks of
-- up to N slots), the random nonce this delivery's lease carries (recorded in job:{id}:fences).
-- A command entry this worker may not take (it needs more slots, or it failed here moments ago,
-- see eligible in common.lua) is set aside: claimed to the ASIDE consumer, where every lease
-- pass looks first, so a worker that may take it finds it without waiting for a new entry.
-- Returns {stream index, entry id, job, chunk, attempt, spec, data, kind}, data false when larger than
-- the inline limit (the caller reads it with a plain HGET: Lua would copy it twice more); or,
-- when every stream is drained, {0, last entry id of each of the six streams} so the caller can block for
-- anything newer.
local group, consumer, dead_cap, inline_limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local slots, nonce = tonumber(ARGV[5]) or 0, ARGV[6]
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local order = { 1, 2, 3 }
if slots > 0 then
  order = { 1, 4, 2, 5, 3, 6 }
end
local now_ms = now_millis()

-- Hands entry `id` of the stream to this worker (it is in the consumer's pending list now), or
-- drops it when it needs no work, or buries it when its input is gone: the reply, or nil.
local function deliver(stream_index, id, f)
  local stream = streams[stream_index]
  local ref = entry_ref(stream_index, id)
  local status = redis.call('GET', job_key(f.job, 'status'))
  local done = redis.call('HEXISTS', job_key(f.job, 'results'), f.chunk) == 1
  if done or (status and FINISHED[status]) then
    drop_entry(stream, group, id)
    forget_task(f.job, f.chunk, ref)
    return nil
  end
  local chunks = job_key(f.job, 'chunks')
  if redis.call('HEXISTS', chunks, f.chunk) == 1 then
    local data = false
    if redis.call('HSTRLEN', chunks, f.chunk) <= inline_limit then
      data = redis.call('HGET', chunks, f.chunk)
    end
    redis.call('HSET', job_key(f.job, 'fences'), ref, nonce)
    if tonumber(f.attempt) > 1 then
      -- Counted here, where every delivery happens, whether or not a master hands it out.
      redis.call('HINCRBY', job_key(f.job, 'stats'), 'redeliveries', 1)
    end
    return { stream_index, id, f.job, f.chunk, f.attempt, f.spec, data, f.kind or 'search' }
  end
  bury(streams, stream_index, group, id, f,
    'input bytes of chunk ' .. f.chunk .. ' are missing from Redis', KEYS[4], dead_cap)
  return nil
end

for _, stream_index in ipairs(order) do
  local stream = streams[stream_index]
  if stream_index > 3 then
    -- Entries set aside by other workers first: they are older than any undelivered one.
    for _, pending in ipairs(redis.call('XPENDING', stream, group, '-', '+', ASIDE_SCAN, ASIDE)) do
      local id = pending[1]
      local entry = redis.call('XRANGE', stream, id, id)
      if #entry == 0 then
        redis.call('XACK', stream, group, id)
      else
        local f = fields_of(entry[1][2])
        if eligible(f, consumer, slots, now_ms) then
          redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
          local reply = deliver(stream_index, id, f)
          if reply then
            return reply
          end
        end
      end
    end
  end
  while true do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, '>')
    if not reply then
      break
    end
    local entry = reply[1][2][1]
    local id, f = entry[1], fields_of(entry[2])
    if stream_index > 3 and not eligible(f, consumer, slots, now_ms) then
      redis.call('XCLAIM', stream, group, ASIDE, 0, id, 'JUSTID')
    else
      local delivered = deliver(stream_index, id, f)
      if delivered then
        return delivered
      end
    end
  end
end
local last = { 0 }
for stream_index = 1, #streams do
  local newest = redis.call('XREVRANGE', streams[stream_index], '+', '-', 'COUNT', 1)
  if #newest > 0 then
    last[stream_index + 1] = newest[1][1]
  else
    last[stream_index + 1] = '0-0'
  end
end
return last
