-- reserve.lua: move up to max due jobs of the named queues to running, in one step.
-- ARGV: P, now, max, lease_until, nq, then nq queue names, then max lease tokens (distinct
--   random decimal strings, one per delivery).
-- Keys: sched:<queue> -> q:<queue> (due scheduled jobs promoted first, at most PROMOTE_MAX per
--   queue and call), q:<queue> -> run:<queue>, job:<id>.
-- Invariant: jobs are taken highest priority first, then earliest run_at, then oldest, across
-- all named queues; each gets attempt + 1, a fresh lease token and started_at if it had none.
-- Expired leases are not touched here (recover.lua does that).
-- Returns: one array per job: the JOB_FIELDS values as they are after this call, then the id.

local now = ARGV[2]
local max = tonumber(ARGV[3])
local lease_until = ARGV[4]
local nq = tonumber(ARGV[5])
local PROMOTE_MAX = 1000

local queues = {}
for i = 1, nq do queues[i] = ARGV[5 + i] end

for _, queue in ipairs(queues) do
  local due = redis.call('ZRANGEBYSCORE', sched_key(queue), '-inf', now, 'LIMIT', 0, PROMOTE_MAX)
  if #due > 0 then
    local members = {}
    for _, id in ipairs(due) do
      local f = redis.call('HMGET', job_key(id), 'priority', 'run_at', 'seq')
      redis.call('HSET', job_key(id), 'state', 'queued')
      members[#members + 1] = 0
      members[#members + 1] = rank(f[1], f[2], f[3]) .. id
    end
    zrem_all(sched_key(queue), due)
    zadd_all(q_key(queue), members)
  end
end

-- chosen: {member, queue} in delivery order.
local chosen = {}
if nq == 1 then
  local popped = redis.call('ZPOPMIN', q_key(queues[1]), max)
  for i = 1, #popped, 2 do chosen[#chosen + 1] = {popped[i], queues[1]} end
else
  local candidates = {}
  for _, queue in ipairs(queues) do
    for _, member in ipairs(redis.call('ZRANGE', q_key(queue), 0, max - 1)) do
      candidates[#candidates + 1] = {member, queue}
    end
  end
  table.sort(candidates, function(a, b) return a[1] < b[1] end)
  local taken = {}
  for i = 1, math.min(max, #candidates) do
    chosen[i] = candidates[i]
    batch_rem(taken, q_key(candidates[i][2]), candidates[i][1])
  end
  apply_rems(taken)
end

local token_base = 5 + nq
local running = {}
local out = {}
local A, S, T, ST = FIELD.attempt, FIELD.started_at, FIELD.lease_token, FIELD.state
for i, c in ipairs(chosen) do
  local id = member_id(c[1])
  local key = job_key(id)
  local f = redis.call('HMGET', key, unpack(JOB_FIELDS))
  if f[ST] then  -- always, while the invariants hold
    local attempt = int(num(f[A]) + 1)
    local token = ARGV[token_base + i]
    if f[S] then
      redis.call('HSET', key, 'state', 'running', 'attempt', attempt, 'lease_token', token)
    else
      redis.call('HSET', key, 'state', 'running', 'attempt', attempt, 'lease_token', token,
        'started_at', now)
      f[S] = now
    end
    f[ST] = 'running'
    f[A] = attempt
    f[T] = token
    batch_add(running, run_key(c[2]), lease_until, id)
    notify(id, f[FIELD.watched], 'running')
    f[#JOB_FIELDS + 1] = id
    out[#out + 1] = f
  end
end
apply_adds(running)
return out
