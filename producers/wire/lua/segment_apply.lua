-- Fenced and once per batch: adds the batch's pages to its segments' length, stamps their
-- last access and records the user's last page. Heat is not computed here: it is computed when read,
-- from these counts, by memoryos_workers/memory/heat.py (its one home).
-- ARGV: 1 token, 2 batch id, 3 now, 4 last page JSON, then pairs: segment id, pages added.
-- Returns 1 applied, 0 already applied, -1 lock lost.
if redis.call('GET', K.lock) ~= ARGV[1] then
  return -1
end
local batch = K.batch_prefix .. ARGV[2]
if redis.call('EXISTS', batch) == 0 then
  return -1  -- forgotten while in flight: apply nothing
end
if redis.call('HGET', batch, 'applied') == '1' then
  return 0
end
local now = ARGV[3]
for i = 5, #ARGV, 2 do
  local sid = ARGV[i]
  redis.call('HINCRBY', K.seg_len, sid, tonumber(ARGV[i + 1]))
  redis.call('HSET', K.seg_access, sid, now)
end
redis.call('HSET', K.state, 'last_page', ARGV[4])
redis.call('HSET', batch, 'applied', '1', 'state', 'segmented')
return 1
