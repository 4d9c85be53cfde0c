-- release.lua: return running deliveries to waiting without counting their attempt: a worker's
-- graceful stop (run_at 0: queued at once, keeping the job's place) or a job held back by its
-- rate limit (snooze: scheduled at run_at, or queued when run_at has passed).
-- ARGV: P, now, n, then per delivery: id, lease_token, run_at.
-- Keys: job:<id>, run:<queue> -> q:<queue> | sched:<queue> (or done:<queue>:cancelled),
--   uniq:<key> (freed when cancelled), wake:<queue>.
-- Invariant: applies only to deliveries that still own their job; a job whose cancel was
-- requested ends cancelled instead of waiting; run_at never moves earlier than the job's own.
-- Returns: how many deliveries applied.

local now = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local rems, adds = {}, {}
local woken = {}
local applied = 0
for i = 0, n - 1 do
  local b = 4 + i * 3
  local id = ARGV[b]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'queue', 'unique_key', 'watched',
    'cancel_requested', 'priority', 'run_at', 'seq', 'attempt')
  if f[1] == 'running' and f[2] == ARGV[b + 1] then
    local queue = f[3]
    local attempt = int(num(f[10]) - 1)
    batch_rem(rems, run_key(queue), id)
    if f[6] == '1' then
      redis.call('HSET', key, 'state', 'cancelled', 'finished_at', ARGV[2], 'attempt', attempt,
        'lease_token', '0')
      batch_add(adds, done_key(queue, 'cancelled'), ARGV[2], id)
      release_unique(f[4], id)
      notify(id, f[5], 'cancelled')
    else
      local run_at = math.max(num(f[8]), tonumber(ARGV[b + 2]))
      local run_at_s = int(run_at)
      if run_at > now then
        redis.call('HSET', key, 'state', 'scheduled', 'run_at', run_at_s, 'attempt', attempt,
          'lease_token', '0')
        batch_add(adds, sched_key(queue), run_at_s, id)
        notify(id, f[5], 'scheduled')
      else
        redis.call('HSET', key, 'state', 'queued', 'attempt', attempt, 'lease_token', '0')
        batch_add(adds, q_key(queue), 0, rank(f[7], f[8], f[9]) .. id)
        woken[queue] = (woken[queue] or 0) + 1
        notify(id, f[5], 'queued')
      end
    end
    applied = applied + 1
  end
end
apply_rems(rems)
apply_adds(adds)
for queue, count in pairs(woken) do wake(queue, count) end
return applied
