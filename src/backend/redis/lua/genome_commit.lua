-- Makes the object written under a storage id the one stored under its hash, unless an object is
-- stored under that hash already (a concurrent or earlier upload of the same bytes): then a
-- genome's copy is kept as a spare for its job (its tasks read it) and a command input's copy is
-- dropped. Records the job as a user either way. Kept blocks lose their upload expiry.
-- ARGV: hash, storage id, blocks, size_bytes, bases, records (JSON), filename, now, job, kind
-- (genome: decoded bases; input: a command input's bytes as uploaded), format ('raw': blocks of
-- bytes; 'packed': blocks of packed bases, each with its exceptions), block size (bytes or
-- bases per block).
local hash, storage, blocks = ARGV[1], ARGV[2], tonumber(ARGV[3])
local packed = ARGV[11] == 'packed'
local record = 'genome:' .. hash
local meta = 'genome-storage:' .. storage
local function block(i) return 'genome:' .. storage .. ':' .. i end
local function drop_copy()
  for i = 0, blocks - 1 do redis.call('DEL', block(i), block(i) .. ':x') end
  redis.call('DEL', meta)
end
local function keep_copy()
  for i = 0, blocks - 1 do
    if redis.call('EXISTS', block(i)) == 0
      or (packed and redis.call('EXISTS', block(i) .. ':x') == 0) then
      drop_copy()
      return false
    end
  end
  for i = 0, blocks - 1 do
    redis.call('PERSIST', block(i))
    if packed then redis.call('PERSIST', block(i) .. ':x') end
  end
  redis.call('PERSIST', meta)
  return true
end
if redis.call('EXISTS', record) == 1 then
  if ARGV[10] == 'genome' then
    if not keep_copy() then
      return redis.error_reply('genome copy ' .. storage .. ' lost a block')
    end
    redis.call('HSET', 'genome-spares', storage, ARGV[9])
  else
    drop_copy()
  end
else
  if not keep_copy() then
    return redis.error_reply('genome upload ' .. storage .. ' lost a block')
  end
  redis.call('HSET', record, 'hash', hash, 'size_bytes', ARGV[4], 'bases', ARGV[5],
    'records', ARGV[6], 'filename', ARGV[7], 'created_at', ARGV[8], 'last_used', ARGV[8],
    'blocks', blocks, 'kind', ARGV[10], 'format', ARGV[11], 'block_size', ARGV[12],
    'storage', storage)
  redis.call('SADD', 'genomes', hash)
end
redis.call('SADD', record .. ':jobs', ARGV[9])
redis.call('HSET', record, 'last_used', ARGV[8])
return 1
