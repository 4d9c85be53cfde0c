-- schedule_history.lua: a schedule's recorded ticks, newest first.
-- ARGV: P, name, limit.
-- Keys: sch.hist:<name> (see tick.lua).
-- Returns: the history members '<tick>:<enqueued_at>:<job id>'.
return redis.call('ZREVRANGE', P .. 'sch.hist:' .. ARGV[2], 0, tonumber(ARGV[3]) - 1)
