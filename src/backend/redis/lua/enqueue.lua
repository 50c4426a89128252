-- Adds tasks whose input bytes were just written to job:{id}:chunks by plain HSETs in the same
-- MULTI (large values stay out of Lua, which would copy them twice more): one entry into the
-- priority's stream, and the entry's ref into job:{id}:tasks. A chunk that is already queued or
-- has a result is skipped, so a repeated enqueue (a master retrying after a lost reply) does not
-- duplicate work; tasks of a finished job are skipped too, and input nobody will read is dropped.
-- Each entry carries the enqueuer's max_attempts, so whoever nacks or reclaims it (a worker, the
-- master) applies the same limit.
-- KEYS: the three task streams.
-- ARGV: max attempts, then groups of (stream index, job, chunk, kind, spec, max matches, slots).
-- Returns how many tasks were added.
local max_attempts = ARGV[1]
local added = 0
for i = 2, #ARGV, 7 do
  local stream_index, job, chunk, kind, spec = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local max_matches, slots = ARGV[i + 5], ARGV[i + 6]
  local tasks = job_key(job, 'tasks')
  local status = redis.call('GET', job_key(job, 'status'))
  local queued = redis.call('HEXISTS', tasks, chunk) == 1
  local fresh = not queued
    and redis.call('HEXISTS', job_key(job, 'results'), chunk) == 0
    and not (status and FINISHED[status])
  if fresh then
    local id = redis.call('XADD', all_streams(KEYS[1], KEYS[2], KEYS[3])[tonumber(stream_index)], '*',
      'job', job, 'chunk', chunk, 'attempt', 1, 'max', max_attempts, 'kind', kind, 'spec', spec,
      'max_matches', max_matches, 'slots', slots)
    redis.call('HSET', tasks, chunk, entry_ref(stream_index, id))
    added = added + 1
  elseif not queued then
    redis.call('HDEL', job_key(job, 'chunks'), chunk)
  end
end
return added
