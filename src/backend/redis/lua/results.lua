-- Storing chunk results (prepended to put_result.lua and complete.lua, after common.lua,
-- fence.lua and settle.lua). A result is stored if it is the first for its chunk and its job is
-- not cancelled, and only from the worker holding the chunk's current delivery, with a match
-- count the task can hold (fence.lua). Only a first write moves the job's stats, so they always
-- equal the sum over stored results however often a chunk is redelivered; the job's status
-- then follows (settle.lua). What stored results move is tallied and written once per job and
-- per worker when the script is done, with the same sums as one write per result.
-- KEYS: the three task streams, the refusal counters, the index of workers with task records.
-- ARGV: group, task times kept, then per result: job, chunk, header JSON, matches, stream
-- index, entry id, worker, nonce, parts (0: the payload is the next argument), inline payload,
-- kind, seconds spent ('' if unknown), '1' if the payload failed its kind's check ('' if not).
local RESULT_ARGS = 13
-- Saturate rather than overflow: past 2^53 a double no longer counts exactly anyway.
local MATCHES_CAP = 9007199254740992

local group, times_kept = ARGV[1], tonumber(ARGV[2])
local streams = all_streams(KEYS[1], KEYS[2], KEYS[3])
local refused_key, task_workers_key = KEYS[4], KEYS[5]

-- The results of this call, in order.
local function result_items()
  local items = {}
  for i = 3, #ARGV, RESULT_ARGS do
    items[#items + 1] = {
      job = ARGV[i], chunk = ARGV[i + 1], header = ARGV[i + 2], matches = ARGV[i + 3],
      stream_index = tonumber(ARGV[i + 4]), id = ARGV[i + 5], worker = ARGV[i + 6],
      nonce = ARGV[i + 7], parts = tonumber(ARGV[i + 8]), inline = ARGV[i + 9],
      kind = ARGV[i + 10], seconds = ARGV[i + 11], bad_payload = ARGV[i + 12] == '1',
    }
  end
  return items
end

-- Each job's status as read once (false: no such job); nothing here changes it before
-- flush_tally settles it.
local job_statuses = {}
local function job_status(job)
  if job_statuses[job] == nil then
    job_statuses[job] = redis.call('GET', job_key(job, 'status'))
  end
  return job_statuses[job]
end

-- Per job: results stored and their match counts in order; per worker and kind: results
-- stored and the seconds each took, when known, in order.
local stored_by_job, stored_by_worker = {}, {}

local function tally(item)
  local job = stored_by_job[item.job] or { count = 0, matches = {} }
  stored_by_job[item.job] = job
  job.count = job.count + 1
  job.matches[#job.matches + 1] = tonumber(item.matches)
  local kinds = stored_by_worker[item.worker] or {}
  stored_by_worker[item.worker] = kinds
  local done = kinds[item.kind] or { count = 0, seconds = {} }
  kinds[item.kind] = done
  done.count = done.count + 1
  if item.seconds ~= '' then
    done.seconds[#done.seconds + 1] = item.seconds
  end
end

-- Writes the tally: job stats, then each worker's counts and times, then each job's status.
local function flush_tally()
  for job, stored in pairs(stored_by_job) do
    local stats = job_key(job, 'stats')
    redis.call('HINCRBY', stats, 'chunks_processed', stored.count)
    local total = tonumber(redis.call('HGET', stats, 'total_matches')) or 0
    for _, matches in ipairs(stored.matches) do
      if matches > MATCHES_CAP - total then
        total = MATCHES_CAP
      else
        total = total + matches
      end
    end
    redis.call('HSET', stats, 'total_matches', string.format('%.0f', total))
  end
  for worker, kinds in pairs(stored_by_worker) do
    for kind, done in pairs(kinds) do
      redis.call('HINCRBY', worker_key(worker, 'tasks_completed'), kind, done.count)
      if #done.seconds > 0 then
        -- Newest first, as one push per result would leave them.
        local times = worker_key(worker, 'task_times:' .. kind)
        redis.call('LPUSH', times, unpack(done.seconds))
        redis.call('LTRIM', times, 0, times_kept - 1)
      end
    end
    redis.call('SADD', task_workers_key, worker)
  end
  for job in pairs(stored_by_job) do
    settle_status(job_key(job, 'status'), job_key(job, 'stats'), job_key(job, 'info'))
  end
end

-- Stores one result; its payload lands in the result's parts list, inline or by renaming the
-- parts the delivery staged, so a result's parts become visible together with it.
-- Returns {1, ''} if stored, {0, ''} if not the first or the job was cancelled, {-1, ''} if no
-- job, {-2, reason} if refused, {-3, what} if the staged parts do not match the count.
local function store_result(item)
  local job, chunk = item.job, item.chunk
  local status = job_status(job)
  local staging = job_key(job, 'staging:' .. chunk .. ':' .. item.id)
  if status == 'cancelled' then
    redis.call('DEL', staging)
    return { 0, '' }
  end
  local f, reason = fence(streams, group, item.stream_index, item.id, item.worker, job, chunk,
    item.nonce, refused_key)
  if not f then
    return { -2, reason }
  end
  if f.max_matches and tonumber(item.matches) > tonumber(f.max_matches) then
    redis.call('HINCRBY', refused_key, 'out_of_range', 1)
    return { -2, 'out_of_range' }
  end
  if item.bad_payload then
    redis.call('DEL', staging)
    redis.call('HINCRBY', refused_key, 'bad_payload', 1)
    return { -2, 'bad_payload' }
  end
  if not status then
    return { -1, '' }
  end
  if item.parts > 0 and redis.call('LLEN', staging) ~= item.parts then
    return { -3, item.parts .. ' parts announced, ' .. redis.call('LLEN', staging) .. ' staged' }
  end
  if redis.call('HSETNX', job_key(job, 'results'), chunk, item.header) == 0 then
    redis.call('DEL', staging)
    return { 0, '' }
  end
  local parts_key = job_key(job, 'result:' .. chunk)
  if item.parts > 0 then
    redis.call('RENAME', staging, parts_key)
    redis.call('PERSIST', parts_key)
  elseif redis.call('RPUSH', parts_key, item.inline) > 1 then
    -- A list left behind by no stored result (this one is the first) holds nothing of it.
    redis.call('LTRIM', parts_key, -1, -1)
  end
  tally(item)
  return { 1, '' }
end
