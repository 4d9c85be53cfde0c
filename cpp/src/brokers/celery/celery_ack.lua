-- Ends deliveries ARGV[3..] as kombu's ack does: HDEL from the unacked hash (ARGV[1]) and ZREM
-- from unacked_index (ARGV[2]). Returns 1 per tag still held, 0 for one restored meanwhile
-- (its visibility timeout passed and a worker put it back in the queue).
local unacked, index = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  local held = redis.call('HDEL', unacked, ARGV[i])
  redis.call('ZREM', index, ARGV[i])
  out[#out + 1] = held
end
return out
