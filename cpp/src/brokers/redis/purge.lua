-- purge.lua: delete every job of a queue (of all queues when the name is empty) that is not
-- running: queued, scheduled and final ones.
-- ARGV: P, queue ('' for all), budget (most jobs deleted by this call; the broker calls again
--   while `more`).
-- Keys: queues, q:<queue>, sched:<queue>, done:<queue>:<state>, job:<id>, jobs, uniq:<key>.
-- Invariant: running jobs and their leases are untouched; the unique keys of deleted live jobs
-- are freed; a queue left with nothing leaves the queue set.
-- Returns: {deleted, more (1 when the budget ran out)}.

local budget = tonumber(ARGV[3])
local queues
if ARGV[2] == '' then queues = redis.call('SMEMBERS', P .. 'queues') else queues = {ARGV[2]} end
local deleted = 0

local function delete_jobs(ids)
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', job_key(id), 'unique_key', 'watched')
    release_unique(f[1], id)
    redis.call('DEL', job_key(id))
    notify(id, f[2], 'deleted')
  end
  zrem_all(P .. 'jobs', ids)
  deleted = deleted + #ids
  budget = budget - #ids
end

for _, queue in ipairs(queues) do
  local members = redis.call('ZRANGE', q_key(queue), 0, budget - 1)
  if #members > 0 then
    local ids = {}
    for i, member in ipairs(members) do ids[i] = member_id(member) end
    zrem_all(q_key(queue), members)
    delete_jobs(ids)
  end
  local keys = {sched_key(queue)}
  for _, state in ipairs(FINAL_STATES) do keys[#keys + 1] = done_key(queue, state) end
  for _, key in ipairs(keys) do
    if budget <= 0 then return {deleted, 1} end
    local ids = redis.call('ZRANGE', key, 0, budget - 1)
    if #ids > 0 then
      zrem_all(key, ids)
      delete_jobs(ids)
    end
  end
  if budget <= 0 then return {deleted, 1} end
  forget_queue_if_empty(queue)
end
return {deleted, 0}
