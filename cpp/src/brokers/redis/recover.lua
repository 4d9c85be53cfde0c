-- recover.lua: return running jobs whose lease expired to queued, or end them: cancelled when
-- their cancel was requested, failed (LeaseExpired) when their last attempt was spent.
-- ARGV: P, now, budget (most jobs handled by this call; the broker calls again while `more`).
-- Keys: queues (read), run:<queue> -> q:<queue> | done:<queue>:<state>, job:<id>,
--   uniq:<key> (freed when final), wake:<queue>.
-- Invariant: a lease is expired when lease_until < now; live leases are never touched.
-- Returns: {requeued, ended, more (1 when the budget ran out)}.

local now_s = ARGV[2]
local now = tonumber(now_s)
local budget = tonumber(ARGV[3])
local requeued, ended = 0, 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  if budget <= 0 then return {requeued, ended, 1} end
  local expired = redis.call('ZRANGEBYSCORE', run_key(queue), '-inf', '(' .. now_s, 'LIMIT', 0,
    budget)
  if #expired > 0 then
    budget = budget - #expired
    local adds = {}
    local woken = 0
    for _, id in ipairs(expired) do
      local key = job_key(id)
      local f = redis.call('HMGET', key, 'attempt', 'max_attempts', 'cancel_requested',
        'priority', 'run_at', 'seq', 'unique_key', 'watched')
      local final = nil
      if f[3] == '1' then
        final = 'cancelled'
        redis.call('HSET', key, 'state', final, 'finished_at', now_s, 'lease_token', '0')
      elseif num(f[1]) >= num(f[2]) then
        final = 'failed'
        redis.call('HSET', key, 'state', final, 'finished_at', now_s, 'lease_token', '0',
          'error', pack('LeaseExpired', 'the worker running attempt ' .. f[1] .. ' of ' .. f[2] ..
            ' stopped renewing its lease (it died or lost the broker)', ''))
      end
      if final then
        batch_add(adds, done_key(queue, final), now_s, id)
        release_unique(f[7], id)
        notify(id, f[8], final)
        ended = ended + 1
      else
        redis.call('HSET', key, 'state', 'queued', 'lease_token', '0')
        batch_add(adds, q_key(queue), 0, rank(f[4], f[5], f[6]) .. id)
        notify(id, f[8], 'queued')
        requeued = requeued + 1
        woken = woken + 1
      end
    end
    zrem_all(run_key(queue), expired)
    apply_adds(adds)
    if woken > 0 then wake(queue, woken) end
  end
end
return {requeued, ended, 0}
