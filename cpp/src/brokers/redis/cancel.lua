-- cancel.lua: cancel one job: a scheduled or queued job ends cancelled at once, a running one is
-- marked cancel_requested (its worker sees it at the next heartbeat), a final one is left.
-- ARGV: P, now, id.
-- Keys: job:<id>, sched:<queue> | q:<queue> -> done:<queue>:cancelled, uniq:<key> (freed).
-- Invariant: a cancelled job is never reserved (it leaves q and sched in this same step).
-- Returns: the job's state after the call, or nil when there is no such job.

local now = ARGV[2]
local id = ARGV[3]
local key = job_key(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at', 'seq', 'unique_key',
  'watched')
local state, queue = f[1], f[2]
if not state then return nil end
if state == 'scheduled' or state == 'queued' then
  if state == 'scheduled' then
    redis.call('ZREM', sched_key(queue), id)
  else
    redis.call('ZREM', q_key(queue), rank(f[3], f[4], f[5]) .. id)
  end
  redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now)
  redis.call('ZADD', done_key(queue, 'cancelled'), now, id)
  release_unique(f[6], id)
  notify(id, f[7], 'cancelled')
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', key, 'cancel_requested', '1')
  notify(id, f[7], 'cancel_requested')
end
return state
