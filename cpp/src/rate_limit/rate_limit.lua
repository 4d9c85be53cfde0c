-- rate_limit.lua: one GCRA step, or a pause, on one limiter key, timed by the Redis server's
-- clock so that every machine sharing the limit agrees on "now". The same maths as gcra_step and
-- gcra_pause_tat in gcra.cpp.
-- ARGV: key (<prefix>rl:<name length>:<limiter name>[:<key>]), op ('step' or 'pause'), interval_us,
--   capacity_us, then n (step) or the pause's offset: how far past now the TAT must be
--   (pause, gcra_pause_tat(0, 0, ...)).
-- Keys: the one named by ARGV[1], holding the key's TAT in epoch microseconds. It expires when
--   the TAT passes, since a TAT in the past is the same as no key: idle limiters vanish.
-- Invariant: a step admits only while the TAT stays within capacity of now, so no window of the
--   period admits more than count + burst units.
-- Returns: {1, 0} when admitted (or paused), {0, wait_us} when refused.

local key = ARGV[1]
local interval = tonumber(ARGV[3])
local capacity = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', key)) or 0

local function store(new_tat)
  -- %d: tostring() would print a 16-digit number in exponent form and lose microseconds.
  redis.call('SET', key, string.format('%d', new_tat), 'PX',
    math.floor((new_tat - now) / 1000) + 1)
end

if ARGV[2] == 'pause' then
  local paused = now + tonumber(ARGV[5])
  if paused > tat then store(paused) end
  return {1, 0}
end

local new_tat = math.max(tat, now) + interval * tonumber(ARGV[5])
local ahead = new_tat - now
if ahead <= capacity then
  store(new_tat)
  return {1, 0}
end
return {0, ahead - capacity}
