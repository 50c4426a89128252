-- The fence every result write passes (prepended to put_result.lua and stage_part.lua, after
-- common.lua): the writer must hold the chunk's current delivery.

-- The fields of the delivery if `worker` holds it with `nonce` and it is the entry of `job`'s
-- `chunk`; otherwise nil and why not ('not_holder' for a task that exists or has a result,
-- 'no_such_task' otherwise), counted in `refused_key`.
local function fence(streams, group, stream_index, id, worker, job, chunk, nonce, refused_key)
  local stream = streams[stream_index]
  if holds(stream, group, stream_index, id, worker, job, chunk, nonce) then
    local entry = redis.call('XRANGE', stream, id, id)
    if #entry > 0 then
      local f = fields_of(entry[1][2])
      if f.job == job and f.chunk == chunk then
        return f
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
