-- What of the user waits for a worker (read only, for `memoryos stats`): pages in pending batches (not
-- dead-lettered ones) and when the oldest of them was published; pages out of short-term that wait to
-- fill a batch are reported apart, since they wait by design (at most promotion_max_wait).
-- Returns {buffered pages, pending batches, pages in them, published_at of their oldest page or ''}.
local ids = redis.call('LRANGE', K.batches, 0, -1)
local pages = 0
for _, id in ipairs(ids) do
  pages = pages + tonumber(redis.call('HGET', K.batch_prefix .. id, 'count') or '0')
end
local oldest = ''
if #ids > 0 then
  local first = redis.call('HMGET', K.batch_prefix .. ids[1], 'pages', 'created_at')
  local ok, decoded = pcall(cjson.decode, first[1] or '[]')
  if ok and type(decoded) == 'table' and type(decoded[1]) == 'table' and decoded[1].published_at then
    oldest = string.format('%.3f', decoded[1].published_at)
  elseif first[2] then
    oldest = first[2]
  end
end
return {redis.call('LLEN', K.buf), #ids, pages, oldest}
