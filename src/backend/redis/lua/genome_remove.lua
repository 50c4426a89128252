-- Deletes a stored genome (record, blocks and their exceptions under its storage id, users) unless an unfinished job uses it; with a cutoff,
-- also keeps it when it was used after the cutoff (its last job started or finished later).
-- Users whose job is gone are forgotten on the way.
-- ARGV: hash, cutoff (Unix seconds, or '' for none).
-- Returns {'not_found'}, {'in_use', job...}, {'kept'} or {'removed'}.
local hash, cutoff = ARGV[1], ARGV[2]
local record = 'genome:' .. hash
local users_key = record .. ':jobs'
if redis.call('EXISTS', record) == 0 then return {'not_found'} end
local last_used = tonumber(redis.call('HGET', record, 'last_used') or '0') or 0
local in_use = {}
for _, job in ipairs(redis.call('SMEMBERS', users_key)) do
  local status = redis.call('GET', 'job:' .. job .. ':status')
  if not status then
    redis.call('SREM', users_key, job)
  else
    if status == 'uploading' or status == 'pending' or status == 'processing' then
      table.insert(in_use, job)
    end
    local finished = tonumber(redis.call('HGET', 'job:' .. job .. ':info', 'finished_at') or '')
    if finished and finished > last_used then last_used = finished end
  end
end
if #in_use > 0 then
  table.sort(in_use)
  table.insert(in_use, 1, 'in_use')
  return in_use
end
if cutoff ~= '' and last_used > tonumber(cutoff) then return {'kept'} end
local blocks = tonumber(redis.call('HGET', record, 'blocks') or '0') or 0
local storage = redis.call('HGET', record, 'storage') or hash
local kept = 'genome:' .. storage
for i = 0, blocks - 1 do redis.call('DEL', kept .. ':' .. i, kept .. ':' .. i .. ':x') end
redis.call('DEL', record, users_key, 'genome-storage:' .. storage)
redis.call('SREM', 'genomes', hash)
return {'removed'}
