-- extend.lua: renew the leases of many running deliveries.
-- ARGV: P, lease_until, n, then per delivery: id, lease_token.
-- Keys: job:<id> (read), run:<queue> (score = lease_until).
-- Invariant: only deliveries that still own their job are renewed.
-- Returns: per delivery, owned (1/0) and cancel_requested (1/0), in the order given.

local lease_until = ARGV[2]
local n = tonumber(ARGV[3])
local adds = {}
local out = {}
for i = 0, n - 1 do
  local b = 4 + i * 2
  local id = ARGV[b]
  local f = redis.call('HMGET', job_key(id), 'state', 'lease_token', 'queue', 'cancel_requested')
  if f[1] == 'running' and f[2] == ARGV[b + 1] then
    batch_add(adds, run_key(f[3]), lease_until, id)
    out[#out + 1] = 1
    out[#out + 1] = f[4] == '1' and 1 or 0
  else
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end
apply_adds(adds)
return out
