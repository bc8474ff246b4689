-- Stores one or more turns of one user, in the order given: one call per user and publish, so a bulk
-- publish costs one script per user rather than one per turn, and a user's turns keep their order.
-- ARGV: 1 capacity (unless the user's knobs set one), 2 batch size, 3 now, 4 dedupe window (s),
--       5 kick ttl (ms), 6 schema version, then per turn: turn_id, page JSON object without "seq".
-- Returns {turns stored (the others were duplicates), kick 1|0}.
local now = tonumber(ARGV[3])
local seq = tonumber(redis.call('HGET', K.state, 'seq') or '0')
local first = seq
local stm_len = 0
for i = 7, #ARGV, 2 do
  local turn_id = ARGV[i]
  if not redis.call('ZSCORE', K.ids, turn_id) then  -- also catches a turn_id given twice in this call
    seq = seq + 1
    redis.call('ZADD', K.ids, now, turn_id)
    stm_len = redis.call('RPUSH', K.stm, '{"seq":' .. seq .. ',' .. string.sub(ARGV[i + 1], 2))
  end
end
if seq == first then
  return {0, 0}
end
redis.call('HSET', K.state, 'seq', seq)
redis.call('ZREMRANGEBYSCORE', K.ids, '-inf', now - tonumber(ARGV[4]))

-- The oldest pages past capacity leave short-term for the buffer; every full batch of it is cut. All of
-- this call's turns share `now`, so doing it once at the end leaves what doing it after each turn would.
local capacity = tonumber(redis.call('HGET', K.knobs, 'short_term_capacity') or ARGV[1])
local buffered = nil
while stm_len > capacity do
  buffered = redis.call('RPUSH', K.buf, redis.call('LPOP', K.stm))
  if buffered == 1 then
    redis.call('HSET', K.state, 'buf_since', now)
  end
  stm_len = stm_len - 1
end
buffered = buffered or redis.call('LLEN', K.buf)

local kick = 0
local batch_size = tonumber(ARGV[2])
if buffered >= batch_size then
  while buffered >= batch_size do
    make_batch(batch_size, now, ARGV[6])
    buffered = buffered - batch_size
  end
  kick = claim_kick(ARGV[5])
end
return {seq - first, kick}
