-- prune.lua: delete final jobs that finished before a cutoff (now - result_ttl).
-- ARGV: P, cutoff, budget (most jobs deleted by this call; the broker calls again while `more`).
-- Keys: queues, done:<queue>:<state>, job:<id>, jobs.
-- Invariant: only succeeded, failed and cancelled jobs with finished_at < cutoff are deleted; a
-- queue left with nothing leaves the queue set.
-- Returns: {deleted, more (1 when the budget ran out)}.

local cutoff = ARGV[2]
local budget = tonumber(ARGV[3])
local deleted = 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local removed_here = 0
  for _, state in ipairs(FINAL_STATES) do
    if budget <= 0 then return {deleted, 1} end
    local key = done_key(queue, state)
    local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. cutoff, 'LIMIT', 0, budget)
    if #old > 0 then
      for _, id in ipairs(old) do
        local watched = redis.call('HGET', job_key(id), 'watched')
        redis.call('DEL', job_key(id))
        notify(id, watched, 'deleted')
      end
      zrem_all(key, old)
      zrem_all(P .. 'jobs', old)
      budget = budget - #old
      deleted = deleted + #old
      removed_here = removed_here + #old
    end
  end
  if removed_here > 0 then forget_queue_if_empty(queue) end
end
return {deleted, 0}
