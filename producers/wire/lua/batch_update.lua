-- Fenced: records progress on a batch (state and other fields), so a retried task resumes there.
-- ARGV: 1 fencing token, 2 batch id, then field, value pairs. Returns 1, or -1 when the lock is lost.
if redis.call('GET', K.lock) ~= ARGV[1] or redis.call('EXISTS', K.batch_prefix .. ARGV[2]) == 0 then
  return -1  -- lock lost, or the batch is gone (the user was forgotten): never recreate it
end
local fields = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', K.batch_prefix .. ARGV[2], unpack(fields))
return 1
