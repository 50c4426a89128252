-- Leases up to a count of tasks for a worker, each the oldest undelivered entry of the
-- highest-priority stream that has one, exactly as if leased one at a time: entries that need no
-- work (their job finished, or their chunk's result is stored by an earlier delivery) are
-- dropped on the way; an entry whose input bytes are missing is buried as poison. Entries are
-- read as many at a time as tasks are still wanted, and each job's status, fences and
-- redelivery count are read or written once per run, which is what makes a batch cheap.
-- KEYS: the three task streams, the dead-letter stream.
-- ARGV: group, consumer (worker id), dead-letter cap, largest input returned inline (bytes),
-- the worker's command slots (0: it runs no command task and never touches the command streams;
-- N: it reads them too, each after the task stream of its priority, and takes command tasks of
-- up to N slots), the count wanted, then one random nonce per task (its lease carries it; it is
-- recorded in job:{id}:fences). Nonces are letters and digits.
-- A command entry this worker may not take (it needs more slots, or it failed here moments ago,
-- see eligible in common.lua) is set aside: claimed to the ASIDE consumer, where every lease
-- pass looks first, so a worker that may take it finds it without waiting for a new entry.
-- Returns one {stream index, entry id, job, chunk, attempt, spec, data, kind} per task leased,
-- in order, data false when larger than the inline limit (the caller reads it with a plain HGET:
-- Lua would copy it twice more); or, when none was, the one reply {0, last entry id of each of
-- the six streams} so the caller can block for anything newer.
local group, consumer, dead_cap, inline_limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local slots, count = tonumber(ARGV[5]) or 0, tonumber(ARGV[6])
local nonces = {}
for i = 1, count do
  -- Checked before anything is leased: a fence record must never be ambiguous.
  local nonce = ARGV[6 + i]
  if not nonce or not string.match(nonce, '^%w+$') then
    return redis.error_reply('lease nonce ' .. i .. ' is missing or not letters and digits')
  end
  nonces[i] = nonce
end
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local order = { 1, 2, 3 }
if slots > 0 then
  order = { 1, 4, 2, 5, 3, 6 }
end
local now_ms = now_millis()
local leased = {}

-- Per job: its status as read (false: no such job; nil: not read yet, or to read again), the
-- fence fields and redeliveries to write once the run is over.
local statuses, fences, redeliveries = {}, {}, {}

local function status_of(job)
  if statuses[job] == nil then
    statuses[job] = redis.call('GET', job_key(job, 'status'))
  end
  return statuses[job]
end

-- Hands entries of the stream (each {id, fields}, in order) to this worker (they are in the
-- consumer's pending list now), each unless it needs no work (dropped) or its input is gone
-- (buried). Whether a chunk has a result, and the inputs returned inline, are read once per job.
local function deliver(stream_index, entries)
  local stream = streams[stream_index]
  local chunks_of_job = {}
  for _, entry in ipairs(entries) do
    local f = entry[2]
    local chunks = chunks_of_job[f.job] or {}
    chunks_of_job[f.job] = chunks
    chunks[#chunks + 1] = f.chunk
  end
  local done = {}
  for job, chunks in pairs(chunks_of_job) do
    local stored = redis.call('HMGET', job_key(job, 'results'), unpack(chunks))
    for i, chunk in ipairs(chunks) do
      done[job .. '/' .. chunk] = stored[i] ~= false
    end
  end
  -- Per job: the chunks whose input goes inline, and the replies it goes into.
  local inline = {}
  for _, entry in ipairs(entries) do
    local id, f = entry[1], entry[2]
    local ref = entry_ref(stream_index, id)
    local status = status_of(f.job)
    local chunks = job_key(f.job, 'chunks')
    local needless = done[f.job .. '/' .. f.chunk] or (status and FINISHED[status])
    local size = needless and 0 or redis.call('HSTRLEN', chunks, f.chunk)
    if needless then
      drop_entry(stream, group, id)
      forget_task(f.job, f.chunk, ref)
    elseif size == 0 and redis.call('HEXISTS', chunks, f.chunk) == 0 then
      bury(streams, stream_index, group, id, f,
        'input bytes of chunk ' .. f.chunk .. ' are missing from Redis', KEYS[4], dead_cap)
      -- The job failed just now: its other entries are dropped, as a later run would.
      statuses[f.job] = nil
    else
      local fenced = fences[f.job] or {}
      fences[f.job] = fenced
      fenced[#fenced + 1] = ref
      fenced[#fenced + 1] = nonces[#leased + 1]
      fenced[#fenced + 1] = fence_max_field(ref)
      fenced[#fenced + 1] = f.max_matches or ''
      if tonumber(f.attempt) > 1 then
        -- Counted here, where every delivery happens, whether or not a master hands it out.
        redeliveries[f.job] = (redeliveries[f.job] or 0) + 1
      end
      local reply = { stream_index, id, f.job, f.chunk, f.attempt, f.spec, false, f.kind or 'search' }
      leased[#leased + 1] = reply
      if size <= inline_limit then
        local wanted = inline[f.job] or { chunks = {}, replies = {} }
        inline[f.job] = wanted
        wanted.chunks[#wanted.chunks + 1] = f.chunk
        wanted.replies[#wanted.replies + 1] = reply
      end
    end
  end
  for job, wanted in pairs(inline) do
    local data = redis.call('HMGET', job_key(job, 'chunks'), unpack(wanted.chunks))
    for i, reply in ipairs(wanted.replies) do
      reply[7] = data[i]
    end
  end
end

for _, stream_index in ipairs(order) do
  if #leased >= count then
    break
  end
  local stream = streams[stream_index]
  if stream_index > 3 then
    -- Entries set aside by other workers first: they are older than any undelivered one.
    for _, pending in ipairs(redis.call('XPENDING', stream, group, '-', '+', ASIDE_SCAN, ASIDE)) do
      if #leased >= count then
        break
      end
      local id = pending[1]
      local entry = redis.call('XRANGE', stream, id, id)
      if #entry == 0 then
        redis.call('XACK', stream, group, id)
      else
        local f = fields_of(entry[1][2])
        if eligible(f, consumer, slots, now_ms) then
          redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
          deliver(stream_index, { { id, f } })
        end
      end
    end
  end
  -- Reads only as many entries as tasks are still wanted: each read entry is delivered, dropped,
  -- buried or set aside, never left pending to this worker undelivered.
  while #leased < count do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #leased,
      'STREAMS', stream, '>')
    if not reply then
      break
    end
    local taken = {}
    for _, entry in ipairs(reply[1][2]) do
      local id, f = entry[1], fields_of(entry[2])
      if stream_index > 3 and not eligible(f, consumer, slots, now_ms) then
        redis.call('XCLAIM', stream, group, ASIDE, 0, id, 'JUSTID')
      else
        taken[#taken + 1] = { id, f }
      end
    end
    deliver(stream_index, taken)
  end
end

for job, fenced in pairs(fences) do
  redis.call('HSET', job_key(job, 'fences'), unpack(fenced))
end
for job, n in pairs(redeliveries) do
  redis.call('HINCRBY', job_key(job, 'stats'), 'redeliveries', n)
end
if #leased > 0 then
  return leased
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
return { last }
