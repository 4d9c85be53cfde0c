-- fail.lua: record the failure of many deliveries: retried (scheduled at retry_at, or queued at
-- once when retry_at has passed) or final (failed, or cancelled as the caller says).
-- ARGV: P, now, n, then per delivery 5 values: id, lease_token, retry_at ('' for none),
--   final_state ('failed' or 'cancelled'), error (packed: type, message, traceback).
-- Keys: job:<id>, run:<queue> -> sched:<queue> | q:<queue> | done:<queue>:<state>,
--   uniq:<key> (freed when final), wake:<queue>.
-- Invariant: applies only to deliveries that still own their job. A job whose cancel was
-- requested ends cancelled, never retried. The error is kept on retries too (the last failure).
-- Returns: how many deliveries applied.

local now_s = ARGV[2]
local now = tonumber(now_s)
local n = tonumber(ARGV[3])
local rems, adds = {}, {}
local woken = {}
local applied = 0
for i = 0, n - 1 do
  local b = 4 + i * 5
  local id = ARGV[b]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'queue', 'unique_key', 'watched',
    'cancel_requested', 'priority', 'seq')
  if f[1] == 'running' and f[2] == ARGV[b + 1] then
    local queue = f[3]
    local retry_at = ARGV[b + 2]
    local final = ARGV[b + 3]
    if f[6] == '1' then final = 'cancelled' elseif retry_at ~= '' then final = nil end
    batch_rem(rems, run_key(queue), id)
    if final then
      redis.call('HSET', key, 'state', final, 'finished_at', now_s, 'error', ARGV[b + 4])
      batch_add(adds, done_key(queue, final), now_s, id)
      release_unique(f[4], id)
      notify(id, f[5], final)
    else
      local state = 'scheduled'
      if tonumber(retry_at) <= now then state = 'queued' end
      redis.call('HSET', key, 'state', state, 'run_at', retry_at, 'error', ARGV[b + 4])
      if state == 'queued' then
        batch_add(adds, q_key(queue), 0, rank(f[7], retry_at, f[8]) .. id)
        woken[queue] = (woken[queue] or 0) + 1
      else
        batch_add(adds, sched_key(queue), retry_at, id)
      end
      notify(id, f[5], state)
    end
    applied = applied + 1
  end
end
apply_rems(rems)
apply_adds(adds)
for queue, count in pairs(woken) do wake(queue, count) end
return applied
