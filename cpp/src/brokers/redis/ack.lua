-- ack.lua: record the success of many deliveries.
-- ARGV: P, now, n, then per delivery: id, lease_token, result (JSON text, kept verbatim).
-- Keys: job:<id>, run:<queue> -> done:<queue>:succeeded, uniq:<key> (freed).
-- Invariant: applies only to deliveries that still own their job (running, same lease token),
-- so a job never ends in two final states.
-- Returns: how many deliveries applied.

local now = ARGV[2]
local n = tonumber(ARGV[3])
local rems, adds = {}, {}
local applied = 0
for i = 0, n - 1 do
  local b = 4 + i * 3
  local id = ARGV[b]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'queue', 'unique_key', 'watched')
  if f[1] == 'running' and f[2] == ARGV[b + 1] then
    redis.call('HSET', key, 'state', 'succeeded', 'result', ARGV[b + 2], 'finished_at', now)
    batch_rem(rems, run_key(f[3]), id)
    batch_add(adds, done_key(f[3], 'succeeded'), now, id)
    release_unique(f[4], id)
    notify(id, f[5], 'succeeded')
    applied = applied + 1
  end
end
apply_rems(rems)
apply_adds(adds)
return applied
