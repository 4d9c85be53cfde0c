-- enqueue.lua: store new jobs, honouring unique keys (also between the jobs of one call).
-- ARGV: P, now, n, k, then k caller-chosen ids to check are new, then per job 7 values: id,
--   queue, priority, run_at (> 0), max_attempts, unique_key ('' for none), d (packed by the
--   caller: task, args, kwargs, timeout_ms, created_at).
-- Keys: job:<id>, jobs, q:<queue> or sched:<queue>, uniq:<key>, seq, queues, wake:<queue>.
-- Invariant: all or nothing: a caller-chosen id that exists already fails the whole call before
-- anything is written. A job whose unique key a live job holds is not stored; the answer names
-- that job.
-- Returns: position (1-based) and holder id of each job not stored, flat; usually empty.

local now = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local k = tonumber(ARGV[4])
for i = 5, 4 + k do
  if redis.call('EXISTS', job_key(ARGV[i])) == 1 then
    return redis.error_reply('CINEJOBS_INVALID job id ' .. ARGV[i] .. ' already exists')
  end
end

local seq = redis.call('INCRBY', P .. 'seq', n) - n
local refused = {}
local adds, index = {}, {}
local queued_in, touched = {}, {}
-- Jobs of one call mostly share priority and run_at: format their rank prefix once.
local last_priority, last_run_at, last_prefix = nil, nil, nil
for i = 0, n - 1 do
  local b = 5 + k + i * 7
  local id, queue, priority, run_at, ukey = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
    ARGV[b + 5]
  local holder = nil
  if ukey ~= '' then
    holder = redis.call('GET', uniq_key(ukey))
    if holder and not LIVE[redis.call('HGET', job_key(holder), 'state')] then holder = nil end
  end
  if holder then
    refused[#refused + 1] = i + 1
    refused[#refused + 1] = holder
  else
    seq = seq + 1
    local s = int(seq)
    local key = job_key(id)
    if tonumber(run_at) > now then
      redis.call('HSET', key, 'd', ARGV[b + 6], 'queue', queue, 'priority', priority,
        'run_at', run_at, 'max_attempts', ARGV[b + 4], 'seq', s, 'state', 'scheduled')
      batch_add(adds, sched_key(queue), run_at, id)
    else
      redis.call('HSET', key, 'd', ARGV[b + 6], 'queue', queue, 'priority', priority,
        'run_at', run_at, 'max_attempts', ARGV[b + 4], 'seq', s, 'state', 'queued')
      if priority ~= last_priority or run_at ~= last_run_at then
        last_priority, last_run_at = priority, run_at
        last_prefix = string.sub(rank(priority, run_at, 0), 1, 26)
      end
      batch_add(adds, q_key(queue), 0, last_prefix .. string.format('%016d', seq) .. id)
      queued_in[queue] = (queued_in[queue] or 0) + 1
    end
    if ukey ~= '' then
      redis.call('HSET', key, 'unique_key', ukey)
      redis.call('SET', uniq_key(ukey), id)
    end
    index[#index + 1] = s
    index[#index + 1] = id
    touched[queue] = true
  end
end
apply_adds(adds)
if #index > 0 then zadd_all(P .. 'jobs', index) end
for queue in pairs(touched) do
  redis.call('SADD', P .. 'queues', queue)
  -- Scheduled jobs wake waiters too, so they can wait for the new earliest run_at.
  wake(queue, queued_in[queue] or 1)
end
return refused
