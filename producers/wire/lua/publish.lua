-- ARGV: 1 turn_id, 2 page JSON object without "seq", 3 capacity (unless the user's knobs set one), 4 batch size, 5 now,
--       6 dedupe window (s), 7 kick ttl (ms), 8 schema version
-- Returns {new 1|0, seq, batch id or '', kick 1|0}.
local turn_id = ARGV[1]
local now = tonumber(ARGV[5])
if redis.call('ZSCORE', K.ids, turn_id) then
  return {0, 0, '', 0}
end
local seq = redis.call('HINCRBY', K.state, 'seq', 1)
redis.call('ZADD', K.ids, now, turn_id)
redis.call('ZREMRANGEBYSCORE', K.ids, '-inf', now - tonumber(ARGV[6]))
redis.call('RPUSH', K.stm, '{"seq":' .. seq .. ',' .. string.sub(ARGV[2], 2))

local capacity = tonumber(redis.call('HGET', K.knobs, 'short_term_capacity') or ARGV[3])
while redis.call('LLEN', K.stm) > capacity do
  if redis.call('RPUSH', K.buf, redis.call('LPOP', K.stm)) == 1 then
    redis.call('HSET', K.state, 'buf_since', now)
  end
end

local batch_id = ''
local kick = 0
local batch_size = tonumber(ARGV[4])
if redis.call('LLEN', K.buf) >= batch_size then
  batch_id = make_batch(batch_size, now, ARGV[8])
  kick = claim_kick(ARGV[7])
end
return {1, seq, batch_id, kick}
