-- Makes an uploaded sequence a stored genome, unless that genome is stored already (a concurrent
-- first upload won): then this upload's blocks are dropped. Records the job as a user either way.
-- ARGV: hash, upload id, blocks, size_bytes, bases, records (JSON), filename, now, job, kind
-- (genome: decoded bases; input: a command input's bytes as uploaded), format ('raw': blocks of
-- bytes; 'packed': blocks of packed bases, each with its exceptions), block size (bytes or
-- bases per block).
local hash, upload, blocks = ARGV[1], ARGV[2], tonumber(ARGV[3])
local packed = ARGV[11] == 'packed'
local record = 'genome:' .. hash
local function upload_block(i) return 'genome-upload:' .. upload .. ':' .. i end
local function drop_upload()
  for i = 0, blocks - 1 do redis.call('DEL', upload_block(i), upload_block(i) .. ':x') end
end
if redis.call('EXISTS', record) == 1 then
  drop_upload()
else
  for i = 0, blocks - 1 do
    if redis.call('EXISTS', upload_block(i)) == 0
      or (packed and redis.call('EXISTS', upload_block(i) .. ':x') == 0) then
      drop_upload()
      return redis.error_reply('genome upload ' .. upload .. ' lost block ' .. i)
    end
  end
  for i = 0, blocks - 1 do
    local block = record .. ':' .. i
    redis.call('RENAME', upload_block(i), block)
    redis.call('PERSIST', block)
    if packed then
      redis.call('RENAME', upload_block(i) .. ':x', block .. ':x')
      redis.call('PERSIST', block .. ':x')
    end
  end
  redis.call('HSET', record, 'hash', hash, 'size_bytes', ARGV[4], 'bases', ARGV[5],
    'records', ARGV[6], 'filename', ARGV[7], 'created_at', ARGV[8], 'last_used', ARGV[8],
    'blocks', blocks, 'kind', ARGV[10], 'format', ARGV[11], 'block_size', ARGV[12])
  redis.call('SADD', 'genomes', hash)
end
redis.call('SADD', record .. ':jobs', ARGV[9])
redis.call('HSET', record, 'last_used', ARGV[8])
return 1
