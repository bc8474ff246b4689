-- The sweep's and wait_idle's look at one user: promote a buffer that waited too long (or any,
-- when forced), and claim a kick when the first pending batch is due and nobody works on it.
-- ARGV: 1 now, 2 max wait (s), 3 stale after (s), 4 force 1|0, 5 batch size, 6 kick ttl (ms),
--       7 schema version
-- Also re-kicks a persona extraction whose retry (state field persona_not_before) is due, or whose
-- coalescing wait (persona_due_at: a quiet user's pages waiting for more) is over; force ends that wait
-- once no batch is pending (so a flush extracts from every page).
-- Returns {pending batches, buffered pages, locked 1|0, kick 1|0, due or '', persona busy 1|0,
--          persona kick 1|0}.
local now = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local stale = tonumber(ARGV[3])
local buf_since = tonumber(redis.call('HGET', K.state, 'buf_since') or now)
if redis.call('LLEN', K.buf) > 0 and (ARGV[4] == '1' or now - buf_since >= max_wait) then
  while make_batch(tonumber(ARGV[5]), now, ARGV[7]) ~= '' do end
end

local pending = redis.call('LLEN', K.batches)
local buffered = redis.call('LLEN', K.buf)
local locked = redis.call('EXISTS', K.lock)
local kick = 0
local due = nil
if buffered > 0 then
  due = tonumber(redis.call('HGET', K.state, 'buf_since') or now) + max_wait
end
if pending > 0 then
  local first = redis.call('LINDEX', K.batches, 0)
  local b = redis.call('HMGET', K.batch_prefix .. first, 'not_before', 'kicked_at')
  local not_before = tonumber(b[1] or '0')
  local kicked = tonumber(b[2] or '0')
  local batch_due
  if locked == 1 then
    batch_due = now + stale
  elseif now < not_before then
    batch_due = not_before
  elseif redis.call('EXISTS', K.kick) == 0 or now >= kicked + stale then
    redis.call('SET', K.kick, '1', 'PX', ARGV[6])
    redis.call('HSET', K.batch_prefix .. first, 'kicked_at', now)
    kick = 1
    batch_due = now + stale
  else
    batch_due = kicked + stale
  end
  if due == nil or batch_due < due then
    due = batch_due
  end
end
local persona_kick = 0
local persona_due = tonumber(redis.call('HGET', K.state, 'persona_not_before') or '')
if persona_due then
  local retry_due
  if redis.call('EXISTS', K.persona_lock, K.persona_kick) > 0 then
    retry_due = now + stale
  elseif now >= persona_due then
    redis.call('SET', K.persona_kick, '1', 'PX', ARGV[6])
    persona_kick = 1
    retry_due = now + stale
  else
    retry_due = persona_due
  end
  if due == nil or retry_due < due then
    due = retry_due
  end
end
local persona_wait = tonumber(redis.call('HGET', K.state, 'persona_due_at') or '')
if persona_wait then
  if ARGV[4] == '1' and pending == 0 and persona_wait > now then  -- forced once every batch is done
    persona_wait = now
    redis.call('HSET', K.state, 'persona_due_at', tostring(now))
  end
  local wait_due
  if now < persona_wait then
    wait_due = persona_wait
  elseif persona_kick == 1 or redis.call('EXISTS', K.persona_lock, K.persona_kick) > 0 then
    wait_due = now + stale
  else
    redis.call('SET', K.persona_kick, '1', 'PX', ARGV[6])
    persona_kick = 1
    wait_due = now + stale
  end
  if due == nil or wait_due < due then
    due = wait_due
  end
end
local busy = 0
if persona_due or redis.call('EXISTS', K.persona_lock, K.persona_kick, K.heat_kick) > 0 then
  busy = 1
end
return {pending, buffered, locked, kick, due and tostring(due) or '', busy, persona_kick}
