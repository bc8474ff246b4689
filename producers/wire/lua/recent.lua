-- Every turn not yet in the vector store, in one atomic read: short-term, the buffer, and the pages
-- of pending and dead-lettered batches (a batch finishing meanwhile cannot make its pages vanish).
-- Returns {short-term pages, buffered pages, one JSON array of pages per batch, the user's time zone knob
-- or false}.
local stm = redis.call('LRANGE', K.stm, 0, -1)
local buf = redis.call('LRANGE', K.buf, 0, -1)
local batch_pages = {}
for _, list in ipairs({K.batches, K.dead}) do
  for _, id in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local pages = redis.call('HGET', K.batch_prefix .. id, 'pages')
    if pages then
      batch_pages[#batch_pages + 1] = pages
    end
  end
end
return {stm, buf, batch_pages, redis.call('HGET', K.knobs, 'timezone')}
