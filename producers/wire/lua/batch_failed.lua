-- Fenced: counts a failed attempt; schedules the retry through not_before, or dead-letters the
-- batch after max attempts (its pages stay readable in the batch hash).
-- ARGV: 1 fencing token, 2 batch id, 3 error text, 4 not_before, 5 max attempts, 6 now
-- Returns {attempts, 'retry'|'dead'} or {-1, 'lost'}.
if redis.call('GET', K.lock) ~= ARGV[1] or redis.call('EXISTS', K.batch_prefix .. ARGV[2]) == 0 then
  return {-1, 'lost'}
end
local key = K.batch_prefix .. ARGV[2]
local attempts = redis.call('HINCRBY', key, 'attempts', 1)
if attempts >= tonumber(ARGV[5]) then
  redis.call('HSET', key, 'state', 'dead', 'error', ARGV[3], 'dead_at', ARGV[6])
  redis.call('LREM', K.batches, 1, ARGV[2])
  redis.call('RPUSH', K.dead, ARGV[2])
  return {attempts, 'dead'}
end
redis.call('HSET', key, 'not_before', ARGV[4], 'error', ARGV[3])
return {attempts, 'retry'}
