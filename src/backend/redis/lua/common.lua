-- Helpers shared by the queue scripts (prepended to each one, see scripts.rs).
-- Key names mirror keys.rs. A task is one stream entry with fields job, chunk, attempt, max
-- (attempts allowed), kind (absent in entries written before tasks carried one: search), spec,
-- max_matches (the most matches a result may claim; absent in older entries);
-- job:{id}:tasks maps the chunk to its live entry as "{stream index}/{entry id}", and
-- job:{id}:fences maps a leased entry to the random nonce its lease carries (and, under
-- "{ref}:max", the entry's max_matches, so a result is fenced without reading the entry back).

local function job_key(job, suffix)
  return 'job:' .. job .. ':' .. suffix
end

local function worker_key(worker, suffix)
  return 'worker:' .. worker .. ':' .. suffix
end

local FINISHED = { completed = true, failed = true, cancelled = true }

-- Command tasks have streams of their own (keys.rs, COMMAND_STREAMS), read only by workers that
-- run commands, so no other worker ever leases one. A script is given the three task streams as
-- KEYS; the command streams follow them as stream indexes 4 to 6 of every stream list.
local COMMAND_STREAMS = { 'tasks:commands:high', 'tasks:commands:medium', 'tasks:commands:low' }

-- The consumer holding command entries set aside by workers that may not take them (see
-- lease.lua); reclaims leave its entries alone. ASIDE_SCAN bounds how many of them one lease
-- pass looks at per stream.
local ASIDE = 'gridwatch:aside'
local ASIDE_SCAN = 200

-- Whether `worker`, offering `slots` command slots, may take the command entry with fields `f`:
-- it takes no more slots than that, and it did not fail on this worker within the last moments
-- (a retry goes to another worker when one is free; past `avoid_until` its own worker may run it
-- again, so a lone worker still retries).
local function eligible(f, worker, slots, now_ms)
  if (tonumber(f.slots) or 1) > slots then
    return false
  end
  return not (f.avoid == worker and (tonumber(f.avoid_until) or 0) > now_ms)
end

local function all_streams(high, medium, low)
  return { high, medium, low, COMMAND_STREAMS[1], COMMAND_STREAMS[2], COMMAND_STREAMS[3] }
end

local function now_seconds()
  local t = redis.call('TIME')
  return string.format('%d.%06d', t[1], t[2])
end

local function now_millis()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Turns a flat {field, value, ...} list (XRANGE, XCLAIM, XREADGROUP) into a table.
local function fields_of(flat)
  local fields = {}
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  return fields
end

local function entry_ref(stream_index, id)
  return stream_index .. '/' .. id
end

-- Whether entry `id` is leased (in the group's pending list), optionally by `consumer` only.
local function is_leased(stream, group, id, consumer)
  local found
  if consumer then
    found = redis.call('XPENDING', stream, group, id, id, 1, consumer)
  else
    found = redis.call('XPENDING', stream, group, id, id, 1)
  end
  return #found > 0
end

-- Whether `consumer` holds delivery `id` of `job`'s `chunk`: the entry is the chunk's live one, it
-- is in the group's pending list, owned by that consumer, and its fence nonce is the one the lease
-- carries.
local function holds(stream, group, stream_index, id, consumer, job, chunk, nonce)
  local ref = entry_ref(stream_index, id)
  if not stream or redis.call('HGET', job_key(job, 'tasks'), chunk) ~= ref then
    return false
  end
  if not is_leased(stream, group, id, consumer) then
    return false
  end
  return redis.call('HGET', job_key(job, 'fences'), ref) == nonce
end

-- The field of job:{id}:fences holding the max_matches of the delivery of entry `ref` ('' when
-- the entry has none).
local function fence_max_field(ref)
  return ref .. ':max'
end

-- Forgets a delivery's fence nonce: the delivery ended.
local function unfence(job, stream_index, id)
  local ref = entry_ref(stream_index, id)
  redis.call('HDEL', job_key(job, 'fences'), ref, fence_max_field(ref))
end

-- Removes one entry for good: out of the pending list and out of the stream, so acked entries
-- never pile up.
local function drop_entry(stream, group, id)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
end

-- Forgets the chunk's task and frees its input, if `ref` is still its live entry.
local function forget_task(job, chunk, ref)
  local tasks = job_key(job, 'tasks')
  if redis.call('HGET', tasks, chunk) == ref then
    redis.call('HDEL', tasks, chunk)
    redis.call('HDEL', job_key(job, 'chunks'), chunk)
  end
end

local function fail_job(job, err)
  local status_key = job_key(job, 'status')
  local status = redis.call('GET', status_key)
  if status and not FINISHED[status] then
    redis.call('SET', status_key, 'failed')
    redis.call('HSET', job_key(job, 'info'), 'error', err, 'finished_at', now_seconds())
  end
end

-- Moves a task that used up its attempts to the dead-letter stream and fails its job.
local function bury(streams, stream_index, group, id, f, err, dead_stream, dead_cap)
  redis.call('XADD', dead_stream, 'MAXLEN', '~', dead_cap, '*',
    'job', f.job, 'chunk', f.chunk, 'attempt', f.attempt, 'error', err)
  drop_entry(streams[stream_index], group, id)
  forget_task(f.job, f.chunk, entry_ref(stream_index, id))
  fail_job(f.job, err)
end

-- Ends one delivery that did not complete. The task comes back as a new entry at the tail of its
-- stream carrying attempt + 1, so any worker's next XREADGROUP gets it as a retry; after its max
-- attempts (the entry's own, else `max_attempts`) it is buried instead. Tasks of finished jobs,
-- and chunks whose result is stored already, need no retry and are dropped.
-- `avoid` (optional): the worker the attempt failed on, kept from the retry of a command task for
-- `avoid_ms` (see eligible).
-- Returns the next attempt number, 0 if buried, -1 if dropped.
local function requeue(streams, stream_index, group, id, f, err, max_attempts, dead_stream, dead_cap,
                       avoid, avoid_ms)
  local stream = streams[stream_index]
  unfence(f.job, stream_index, id)
  local status = redis.call('GET', job_key(f.job, 'status'))
  local done = redis.call('HEXISTS', job_key(f.job, 'results'), f.chunk) == 1
  if done or (status and FINISHED[status]) then
    drop_entry(stream, group, id)
    forget_task(f.job, f.chunk, entry_ref(stream_index, id))
    return -1
  end
  local attempt = tonumber(f.attempt)
  local allowed = tonumber(f.max) or max_attempts
  if attempt >= allowed then
    bury(streams, stream_index, group, id, f, err, dead_stream, dead_cap)
    return 0
  end
  local retry = { 'job', f.job, 'chunk', f.chunk, 'attempt', attempt + 1, 'max', allowed,
    'kind', f.kind or 'search', 'spec', f.spec }
  if f.max_matches then
    retry[#retry + 1] = 'max_matches'
    retry[#retry + 1] = f.max_matches
  end
  if f.slots then
    retry[#retry + 1] = 'slots'
    retry[#retry + 1] = f.slots
  end
  if avoid and stream_index > 3 then
    retry[#retry + 1] = 'avoid'
    retry[#retry + 1] = avoid
    retry[#retry + 1] = 'avoid_until'
    retry[#retry + 1] = now_millis() + avoid_ms
  end
  local new_id = redis.call('XADD', stream, '*', unpack(retry))
  drop_entry(stream, group, id)
  redis.call('HSET', job_key(f.job, 'tasks'), f.chunk, entry_ref(stream_index, new_id))
  return attempt + 1
end

