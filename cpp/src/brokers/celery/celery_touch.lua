-- Sets the unacked_index (ARGV[2]) score of held deliveries ARGV[4..] to ARGV[3]: renewing a
-- lease, or deferring a message (its ETA, a refusal) until a restore puts it back in its queue
-- at score + visibility_timeout. Tags no longer in the unacked hash (ARGV[1]) are left alone.
-- Returns 1 per tag still held, 0 otherwise.
local unacked, index, score = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV do
  if redis.call('HEXISTS', unacked, ARGV[i]) == 1 then
    redis.call('ZADD', index, score, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
