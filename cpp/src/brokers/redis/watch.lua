-- watch.lua: mark jobs as watched, so the scripts that change them publish on P ev:<id>.
-- ARGV: P, then job ids.
-- Keys: job:<id>.
-- Invariant: only existing jobs are marked (no hash is created for an unknown id). The mark
-- lives as long as the job.
-- Returns: how many jobs were marked.

local marked = 0
for i = 2, #ARGV do
  local key = job_key(ARGV[i])
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'watched', '1')
    marked = marked + 1
  end
end
return marked
