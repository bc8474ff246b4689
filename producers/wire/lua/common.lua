-- Shared prelude, prepended to every per-user script.
-- KEYS: 1 stm, 2 buf, 3 state, 4 ids, 5 batches, 6 batch key prefix, 7 kick flag, 8 lock, 9 dead,
--       10 seg:len, 11 seg:visit, 12 seg:access, 13 seg:lbase, 14 heat kick,
--       15 persona kick, 16 persona lock, 17 knobs (the user's own settings)
-- All keys share the user's hash tag, so each script stays in one Redis Cluster slot.
local K = {
  stm = KEYS[1], buf = KEYS[2], state = KEYS[3], ids = KEYS[4],
  batches = KEYS[5], batch_prefix = KEYS[6], kick = KEYS[7], lock = KEYS[8],
  dead = KEYS[9], seg_len = KEYS[10], seg_visit = KEYS[11], seg_access = KEYS[12],
  seg_lbase = KEYS[13], heat_kick = KEYS[14], persona_kick = KEYS[15], persona_lock = KEYS[16],
  knobs = KEYS[17],
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
