-- list.lua: one slice of a listing of jobs, newest first (by seq), filtered by queue, state
-- and task. Without filters it reads the page at once; with filters it scans at most `budget`
-- jobs below the cursor, and the broker calls again from the returned cursor until the page is
-- full or the jobs run out (so a long scan never blocks Redis).
-- ARGV: P, now, cursor ('+inf' or '(<seq>'), budget, skip (matches still to pass over for the
--   offset), want (matches still wanted), queue, state, task ('' for no filter).
-- Keys (read only): jobs, job:<id>.
-- Invariant: a scheduled job whose run_at has come reads (and filters) as queued.
-- Returns: {next_cursor ('' when the scan reached the oldest job), skipped, job, job, ...} where
--   each job is an array of the JOB_FIELDS values, then the id.

local now = tonumber(ARGV[2])
local cursor = ARGV[3]
local budget = tonumber(ARGV[4])
local skip = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local queue, state, task = ARGV[7], ARGV[8], ARGV[9]
local out = {'', 0}

-- row: the job's JOB_FIELDS values, then its id.
local function row(id)
  local f = redis.call('HMGET', job_key(id), unpack(JOB_FIELDS))
  f[#JOB_FIELDS + 1] = id
  return f
end

-- task_of reads the task, the first text packed in d.
local function task_of(d)
  local colon = string.find(d, ':', 1, true)
  return string.sub(d, colon + 1, colon + tonumber(string.sub(d, 1, colon - 1)))
end

if queue == '' and state == '' and task == '' then
  if want > 0 then
    for _, id in ipairs(redis.call('ZREVRANGE', P .. 'jobs', skip, skip + want - 1)) do
      out[#out + 1] = row(id)
    end
  end
  out[2] = skip
  return out
end

local scanned = redis.call('ZREVRANGEBYSCORE', P .. 'jobs', cursor, '-inf', 'WITHSCORES',
  'LIMIT', 0, budget)
local skipped = 0
local last = nil
for i = 1, #scanned, 2 do
  if want <= 0 then break end
  local id = scanned[i]
  last = scanned[i + 1]
  local f = redis.call('HMGET', job_key(id), 'queue', 'state', 'd', 'run_at')
  if f[1] and (queue == '' or f[1] == queue) and (task == '' or task_of(f[3]) == task) and
      (state == '' or effective_state(f[2], f[4], now) == state) then
    if skip > 0 then
      skip = skip - 1
      skipped = skipped + 1
    else
      out[#out + 1] = row(id)
      want = want - 1
    end
  end
end
out[2] = skipped
if last and (want <= 0 or #scanned == 2 * budget) then out[1] = '(' .. last end
return out
