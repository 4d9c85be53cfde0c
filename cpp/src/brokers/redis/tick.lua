-- tick.lua: the claim of a schedule's tick. Loaded between common.lua and enqueue.lua as one
-- script, so the claim and the enqueue of the tick's job are one atomic unit.
-- ARGV: enqueue.lua's arguments for one job (P, now, n = 1, k = 1, the job's id, its 7 values),
--   then schedule name, tick, next tick.
-- Keys: sch.state:<name> (HASH last_tick, next_tick, last_job_id), sch.names (SET of schedule
--   names), sch.hist:<name> (ZSET tick -> '<tick>:<enqueued_at>:<job id>').
-- Invariant: last_tick only moves forward, and a tick's job is stored only by the call that moved
-- it; so each tick is enqueued once however many schedulers offer it.
-- Returns: {0, last_tick, last_job_id} when a tick at or after this one was recorded already;
--   otherwise enqueue.lua's answer (empty, or the position and holder of a refused job).
do
  local base = 5 + tonumber(ARGV[4]) + tonumber(ARGV[3]) * 7
  local schedule, tick, next_tick = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  -- The job's id, or the id of a live job holding the tick's unique key (one enqueued by
  -- hand): enqueue.lua then refuses the new job, and that one runs the tick.
  local first_job = 5 + tonumber(ARGV[4])
  local job_id = ARGV[first_job]
  local ukey = ARGV[first_job + 5]
  if ukey ~= '' then
    local holder = redis.call('GET', uniq_key(ukey))
    if holder and LIVE[redis.call('HGET', job_key(holder), 'state')] then job_id = holder end
  end
  local state = P .. 'sch.state:' .. schedule
  local last = redis.call('HGET', state, 'last_tick')
  if last and tonumber(last) >= tonumber(tick) then
    return {0, last, redis.call('HGET', state, 'last_job_id')}
  end
  redis.call('HSET', state, 'last_tick', tick, 'next_tick', next_tick, 'last_job_id', job_id)
  redis.call('SADD', P .. 'sch.names', schedule)
  redis.call('ZADD', P .. 'sch.hist:' .. schedule, tick, tick .. ':' .. ARGV[2] .. ':' .. job_id)
end
