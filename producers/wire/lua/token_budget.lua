-- The shared LLM token budget (memoryos_workers/llm/token_budget.py): a generic cell rate algorithm
-- over one key holding the theoretical arrival time, on Redis's own clock.
-- KEYS: 1 the budget key. ARGV: 1 cost (tokens; negative: a refund), 2 seconds per token, 3 burst
-- (seconds), 4 the longest wait the caller accepts (-1: charge, never refuse).
-- Returns {1, wait} when reserved (sleep `wait` first), {0, wait} when the wait would exceed max wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost, interval, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local wait = new_tat - burst - now
if wait < 0 then wait = 0 end
if max_wait >= 0 and wait > max_wait then
  return {0, tostring(wait)}
end
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
return {1, tostring(wait)}
