-- Single global key: removes a user from the sweep index only if nobody lowered its score since
-- the sweep marked it, so a turn published during the sweep keeps its index entry.
-- KEYS: 1 sweep index. ARGV: 1 user id, 2 the mark the sweep set.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
