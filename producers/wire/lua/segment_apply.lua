-- Fenced and once per batch: adds the batch's pages to its segments' length, stamps their
-- last access, recomputes their heat (recency = 1 at access time) and records the user's last page.
-- ARGV: 1 token, 2 batch id, 3 now, 4 alpha, 5 beta, 6 gamma, 7 last page JSON,
--       then pairs: segment id, pages added.
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
local now = tonumber(ARGV[3])
local alpha, beta, gamma = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 8, #ARGV, 2 do
  local sid = ARGV[i]
  local len = redis.call('HINCRBY', K.seg_len, sid, tonumber(ARGV[i + 1]))
  redis.call('HSET', K.seg_access, sid, now)
  local visits = tonumber(redis.call('HGET', K.seg_visit, sid) or '0')
  local analysed = tonumber(redis.call('HGET', K.seg_lbase, sid) or '0')
  redis.call('ZADD', K.heat, alpha * visits + beta * (len - analysed) + gamma, sid)
end
redis.call('HSET', K.state, 'last_page', ARGV[7])
redis.call('HSET', batch, 'applied', '1', 'state', 'segmented')
return 1
