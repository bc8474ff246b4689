-- Shared prelude, prepended to every per-user script.
-- KEYS: 1 stm, 2 buf, 3 state, 4 ids, 5 batches, 6 batch key prefix, 7 kick flag, 8 knobs (the user's
--       own settings), 9 lock, 10 dead, 11 seg:len, 12 seg:visit, 13 seg:access, 14 seg:lbase,
--       15 heat kick, 16 persona kick, 17 persona lock
-- publish.lua gets only the first eight, all it touches (the others are nil there).
-- All keys share the user's hash tag, so each script stays in one Redis Cluster slot.
local K = {
  stm = KEYS[1], buf = KEYS[2], state = KEYS[3], ids = KEYS[4],
  batches = KEYS[5], batch_prefix = KEYS[6], kick = KEYS[7], knobs = KEYS[8],
  lock = KEYS[9], dead = KEYS[10], seg_len = KEYS[11], seg_visit = KEYS[12], seg_access = KEYS[13],
  seg_lbase = KEYS[14], heat_kick = KEYS[15], persona_kick = KEYS[16], persona_lock = KEYS[17],
}

-- Moves up to n buffered pages into a new pending batch; returns its id ('' when the buffer is empty).
local function make_batch(n, now, schema_version)
  local pages = redis.call('LRANGE', K.buf, 0, n - 1)
  if #pages == 0 then
    return ''
  end
  redis.call('LTRIM', K.buf, #pages, -1)
  local batch_id = string.format('%012d', redis.call('HINCRBY', K.state, 'batch_seq', 1))
  redis.call('HSET', K.batch_prefix .. batch_id,
    'state', 'pending', 'pages', '[' .. table.concat(pages, ',') .. ']', 'count', #pages,
    'attempts', 0, 'not_before', 0, 'created_at', now, 'kicked_at', now,
    'schema_version', schema_version)
  redis.call('RPUSH', K.batches, batch_id)
  if redis.call('LLEN', K.buf) == 0 then
    redis.call('HDEL', K.state, 'buf_since')
  else
    redis.call('HSET', K.state, 'buf_since', now)
  end
  return batch_id
end

-- Sets the coalescing flag; 1 when the caller should send the promote task.
local function claim_kick(ttl_ms)
  if redis.call('SET', K.kick, '1', 'NX', 'PX', ttl_ms) then
    return 1
  end
  return 0
end
