-- Reads ranges of the blocks kept under a storage id, if they are kept the way the caller
-- expects; one step, so a removal never leaves a read half done. How they are kept, and how many
-- bases are readable, comes from the storage's meta key (written as an upload goes, so an upload
-- in progress reads as far as its blocks are written), or for objects stored before storage ids
-- from the record under the same name, when that record names no other storage.
-- KEYS: the keys to read. ARGV: storage id, the expected layout ('<format>:<block size>' as
-- stored, empty where none is), then a (from, to) byte range (GETRANGE's) per key.
-- Returns {'ok', bases, part...}; {'layout', format, block size} as stored when they differ
-- from the expected; {'missing'} when nothing is kept under the storage id.
local fields = redis.call('HMGET', 'genome-storage:' .. ARGV[1], 'bases', 'format', 'block_size')
if not fields[1] then
  fields = redis.call('HMGET', 'genome:' .. ARGV[1], 'bases', 'format', 'block_size', 'storage')
  if not fields[1] or (fields[4] and fields[4] ~= ARGV[1]) then return {'missing'} end
end
local format, block_size = fields[2] or '', fields[3] or ''
if format .. ':' .. block_size ~= ARGV[2] then return {'layout', format, block_size} end
local reply = {'ok', fields[1]}
for i, key in ipairs(KEYS) do
  reply[i + 2] = redis.call('GETRANGE', key, ARGV[2 * i + 1], ARGV[2 * i + 2])
end
return reply
