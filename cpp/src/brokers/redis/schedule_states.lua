-- schedule_states.lua: read recorded schedule states.
-- ARGV: P, name ('' for every schedule).
-- Keys: sch.names, sch.state:<name> (see tick.lua).
-- Returns: flat {name, last_tick, next_tick, last_job_id, ...}, names in set order.
local names = {ARGV[2]}
if ARGV[2] == '' then names = redis.call('SMEMBERS', P .. 'sch.names') end
local out = {}
for _, name in ipairs(names) do
  local s = redis.call('HMGET', P .. 'sch.state:' .. name, 'last_tick', 'next_tick', 'last_job_id')
  if s[1] then
    out[#out + 1] = name
    out[#out + 1] = s[1]
    out[#out + 1] = s[2]
    out[#out + 1] = s[3]
  end
end
return out
