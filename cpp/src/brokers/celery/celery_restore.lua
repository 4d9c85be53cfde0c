-- Returns held deliveries to their queues (see restore in celery_common.lua). ARGV[1], ARGV[2]:
-- the unacked hash and unacked_index set. ARGV[3] = 'tags': the tags ARGV[4..] (a worker gives
-- its messages back); ARGV[3] = 'expired': up to ARGV[5] deliveries whose score is at most
-- ARGV[4] (now - visibility_timeout), as kombu's restore_visible. Returns how many were held.
local unacked, index, mode = ARGV[1], ARGV[2], ARGV[3]
local tags
if mode == 'expired' then
  tags = redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
else
  tags = {}
  for i = 4, #ARGV do tags[#tags + 1] = ARGV[i] end
end
local restored = 0
for _, tag in ipairs(tags) do
  restored = restored + restore(unacked, index, tag)
end
return restored
