-- Deletes the spare copies (see genome_commit.lua) whose job has ended or is gone: their blocks,
-- as many as their meta key counts, and the meta key. Returns their storage ids.
local swept = {}
local spares = redis.call('HGETALL', 'genome-spares')
for i = 1, #spares, 2 do
  local storage, job = spares[i], spares[i + 1]
  local status = redis.call('GET', 'job:' .. job .. ':status')
  if not (status == 'uploading' or status == 'pending' or status == 'processing') then
    local meta = 'genome-storage:' .. storage
    local blocks = tonumber(redis.call('HGET', meta, 'blocks') or '0') or 0
    for b = 0, blocks - 1 do
      redis.call('DEL', 'genome:' .. storage .. ':' .. b, 'genome:' .. storage .. ':' .. b .. ':x')
    end
    redis.call('DEL', meta)
    redis.call('HDEL', 'genome-spares', storage)
    table.insert(swept, storage)
  end
end
return swept
