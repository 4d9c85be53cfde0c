-- counts.lua: the number of jobs per queue and state (states with no job left out).
-- ARGV: P, now.
-- Keys (read only): queues, q:<queue>, sched:<queue>, run:<queue>, done:<queue>:<state>.
-- Invariant: a scheduled job whose run_at has come counts as queued, as everywhere.
-- Returns: queue1, state1, count1, queue2, ...

local now = ARGV[2]
local out = {}
local function put(queue, state, count)
  if count > 0 then
    out[#out + 1] = queue
    out[#out + 1] = state
    out[#out + 1] = count
  end
end
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  put(queue, 'scheduled', redis.call('ZCOUNT', sched_key(queue), '(' .. now, '+inf'))
  put(queue, 'queued', redis.call('ZCARD', q_key(queue)) +
    redis.call('ZCOUNT', sched_key(queue), '-inf', now))
  put(queue, 'running', redis.call('ZCARD', run_key(queue)))
  for _, state in ipairs(FINAL_STATES) do
    put(queue, state, redis.call('ZCARD', done_key(queue, state)))
  end
end
return out
