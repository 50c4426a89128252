-- The fence every result write passes (prepended to put_result.lua, complete.lua and
-- stage_part.lua, after common.lua): the writer must hold the chunk's current delivery.

-- The delivery's {max_matches = the most matches its result may claim, nil for no limit} if
-- `worker` holds it with `nonce` and it is the live entry of `job`'s `chunk`; otherwise nil and
-- why not ('not_holder' for a task that exists or has a result, 'no_such_task' otherwise),
-- counted in `refused_key`. The count comes from the fence record the lease wrote; a delivery
-- leased before records carried it has it read from its entry.
local function fence(streams, group, stream_index, id, worker, job, chunk, nonce, refused_key)
  local stream = streams[stream_index]
  local ref = entry_ref(stream_index, id)
  if stream and redis.call('HGET', job_key(job, 'tasks'), chunk) == ref
    and is_leased(stream, group, id, worker) then
    local record = redis.call('HMGET', job_key(job, 'fences'), ref, fence_max_field(ref))
    if record[1] == nonce then
      if record[2] then
        return { max_matches = record[2] ~= '' and record[2] or nil }
      end
      local entry = redis.call('XRANGE', stream, id, id)
      if #entry > 0 then
        local f = fields_of(entry[1][2])
        if f.job == job and f.chunk == chunk then
          return { max_matches = f.max_matches }
        end
      end
    end
  end
  local reason = 'no_such_task'
  if redis.call('HEXISTS', job_key(job, 'tasks'), chunk) == 1
    or redis.call('HEXISTS', job_key(job, 'results'), chunk) == 1 then
    reason = 'not_holder'
  end
  redis.call('HINCRBY', refused_key, reason, 1)
  return nil, reason
end
