-- Fenced: removes the finished batch at the head of the queue.
-- ARGV: 1 fencing token, 2 batch id. Returns 1 done, 0 not at head (already done), -1 lock lost.
if redis.call('GET', K.lock) ~= ARGV[1] then
  return -1
end
if redis.call('LINDEX', K.batches, 0) ~= ARGV[2] then
  return 0
end
redis.call('LPOP', K.batches)
redis.call('DEL', K.batch_prefix .. ARGV[2])
return 1
