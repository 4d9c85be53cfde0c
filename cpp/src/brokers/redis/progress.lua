-- progress.lua: store the progress a running delivery reports.
-- ARGV: P, id, lease_token, progress (packed: fraction, step, message).
-- Keys: job:<id>.
-- Invariant: only the delivery that owns the job may set it.
-- Returns: 1 when stored, 0 when the delivery no longer owns the job.

local key = job_key(ARGV[2])
local f = redis.call('HMGET', key, 'state', 'lease_token', 'watched')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'progress', ARGV[4])
notify(ARGV[2], f[3], 'progress')
return 1
