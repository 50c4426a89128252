-- Reads ranges of a stored genome's blocks, if the genome is kept the way the caller expects;
-- one step, so a removal never leaves a read half done.
-- KEYS: the keys to read. ARGV: hash, the expected layout ('<format>:<block size>' as the record
-- has them, empty where it has none), then a (from, to) byte range (GETRANGE's) per key.
-- Returns {'ok', bases, part...}; {'layout', format, block size} as the record has them when
-- they differ from the expected; {'missing'} when no genome is stored under the hash.
local fields = redis.call('HMGET', 'genome:' .. ARGV[1], 'bases', 'format', 'block_size')
if not fields[1] then return {'missing'} end
local format, block_size = fields[2] or '', fields[3] or ''
if format .. ':' .. block_size ~= ARGV[2] then return {'layout', format, block_size} end
local reply = {'ok', fields[1]}
for i, key in ipairs(KEYS) do
  reply[i + 2] = redis.call('GETRANGE', key, ARGV[2 * i + 1], ARGV[2 * i + 2])
end
return reply
