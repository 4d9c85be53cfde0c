-- prune_ticks.lua: delete schedule history of ticks before a cutoff.
-- ARGV: P, cutoff, budget (unused: one ZREMRANGEBYSCORE per schedule is cheap enough).
-- Keys: sch.names, sch.hist:<name> (see tick.lua).
-- Returns: {deleted, more = 0}.
local deleted = 0
for _, name in ipairs(redis.call('SMEMBERS', P .. 'sch.names')) do
  deleted = deleted + redis.call('ZREMRANGEBYSCORE', P .. 'sch.hist:' .. name, '-inf',
    '(' .. ARGV[2])
end
return {deleted, 0}
