-- A model's learned characters per token (memoryos_workers/llm/token_count.py): running sums of the
-- characters sent and the prompt tokens the provider reported, halved when the tokens pass a cap so
-- recent calls weigh more than old ones.
-- KEYS: 1 the model's hash. ARGV: 1 characters, 2 tokens, 3 cap on the tokens sum, 4 TTL (seconds).
-- Returns {chars, tokens} after the update.
local chars = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'chars', ARGV[1]))
local tokens = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'tokens', ARGV[2]))
local cap = tonumber(ARGV[3])
if tokens > cap then
  local factor = cap / 2 / tokens
  chars, tokens = chars * factor, tokens * factor
  redis.call('HSET', KEYS[1], 'chars', tostring(chars), 'tokens', tostring(tokens))
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {tostring(chars), tostring(tokens)}
