-- common.lua: the key layout and helpers every cinejobs script begins with. The broker prepends
-- this text to each script when loading it, so every script stays one atomic unit.
--
-- Keys, all under the prefix P = ARGV[1] (default "cinejobs:"):
--   P job:<id>              HASH   the job (fields below)
--   P jobs                  ZSET   id -> seq: every stored job (list, newest first)
--   P q:<queue>             ZSET   queued jobs, all score 0; member = rank(priority, run_at,
--                                  seq) .. id, so lexical order is priority desc, run_at, seq
--   P sched:<queue>         ZSET   id -> run_at: scheduled jobs (delayed, or waiting to retry)
--   P run:<queue>           ZSET   id -> lease_until: running jobs
--   P done:<queue>:<state>  ZSET   id -> finished_at: succeeded, failed and cancelled jobs
--   P uniq:<key>            STRING id of the live job holding the unique key
--   P seq                   STRING insertion counter, the FIFO tie-break
--   P queues                SET    every queue name that may hold jobs (no KEYS or SCAN needed)
--   P wake:<queue>          LIST   wake-up tokens idle workers BLPOP, at most WAKE_MAX
--   P ev:<id>               channel published on when a watched job changes
--
-- Job hash fields (names of the SQLite columns where they are one value). Fields only the C++
-- side reads are packed into one, and zero values are left out, because every field costs
-- time on each enqueue and reserve:
--   d            task, args, kwargs, timeout_ms, created_at, packed (see pack below)
--   queue, priority, run_at, max_attempts, seq, state, unique_key (only when set)
--   attempt, started_at, finished_at, lease_token, cancel_requested (absent means 0)
--   progress     fraction, step, message, packed (absent: none reported)
--   result       JSON text (absent until succeeded)
--   error        type, message, traceback, packed (absent: no failure recorded)
--   watched      '1' once a handle waits on the job's events
--
local P = ARGV[1]
local WAKE_MAX = 16

-- The fields read back into a job, in the order the C++ decoder expects, and their indexes
-- (the broker fills both in from its own list, so the order is decided in one place).
local JOB_FIELDS = {--[[JOB_FIELDS]]}
local FIELD = {--[[FIELD_INDEXES]]}

local function job_key(id) return P .. 'job:' .. id end
local function q_key(queue) return P .. 'q:' .. queue end
local function sched_key(queue) return P .. 'sched:' .. queue end
local function run_key(queue) return P .. 'run:' .. queue end
local function done_key(queue, state) return P .. 'done:' .. queue .. ':' .. state end
local function uniq_key(key) return P .. 'uniq:' .. key end

local FINAL_STATES = {'succeeded', 'failed', 'cancelled'}
local LIVE = {scheduled = true, queued = true, running = true}

local function int(n) return string.format('%d', n) end
local function num(text) return tonumber(text) or 0 end  -- absent fields are 0

-- rank: the 42-character sort prefix of a queued job's member; the id follows. run_at is
-- clamped to 16 digits (past year 318,000). A damaged field ranks as 0 rather than failing the
-- script, so one damaged job cannot stop a whole queue: the broker fails it when it is reserved.
local function rank(priority, run_at, seq)
  return string.format('%010d%016d%016d', 2147483647 - num(priority),
    math.max(0, math.min(num(run_at), 9999999999999999)), num(seq))
end
local RANK_WIDTH = 42
local function member_id(member) return string.sub(member, RANK_WIDTH + 1) end

-- pack joins texts as the C++ side reads them: each as <byte length>:<bytes>.
local function pack(...)
  local out = {}
  for i, text in ipairs({...}) do out[i] = #text .. ':' .. text end
  return table.concat(out)
end

-- zadd_all adds {score1, member1, score2, member2, ...} to a sorted set, in slices small enough
-- for unpack.
local function zadd_all(key, pairs_)
  for i = 1, #pairs_, 4000 do
    redis.call('ZADD', key, unpack(pairs_, i, math.min(i + 3999, #pairs_)))
  end
end
local function zrem_all(key, members)
  for i = 1, #members, 4000 do
    redis.call('ZREM', key, unpack(members, i, math.min(i + 3999, #members)))
  end
end

-- Batches of sorted-set changes, keyed by sorted-set key, applied once per script.
local function batch_add(batches, key, score, member)
  local b = batches[key]
  if not b then b = {}; batches[key] = b end
  b[#b + 1] = score
  b[#b + 1] = member
end
local function batch_rem(batches, key, member)
  local b = batches[key]
  if not b then b = {}; batches[key] = b end
  b[#b + 1] = member
end
local function apply_adds(batches) for key, b in pairs(batches) do zadd_all(key, b) end end
local function apply_rems(batches) for key, b in pairs(batches) do zrem_all(key, b) end end

-- wake pushes up to `n` tokens for idle workers of `queue`, keeping at most WAKE_MAX.
local function wake(queue, n)
  n = math.min(n, WAKE_MAX)
  local tokens = {}
  for i = 1, n do tokens[i] = '1' end
  local key = P .. 'wake:' .. queue
  redis.call('LPUSH', key, unpack(tokens))
  redis.call('LTRIM', key, 0, WAKE_MAX - 1)
end

-- notify tells handles waiting on job `id` that it changed, when any is watching.
local function notify(id, watched, what)
  if watched then redis.call('PUBLISH', P .. 'ev:' .. id, what) end
end

-- release_unique frees a unique key when it still names this job.
local function release_unique(key, id)
  if key and redis.call('GET', uniq_key(key)) == id then redis.call('DEL', uniq_key(key)) end
end

-- forget_queue_if_empty drops a queue from the queue set once nothing of it is left.
local function forget_queue_if_empty(queue)
  if redis.call('EXISTS', q_key(queue), sched_key(queue), run_key(queue),
      done_key(queue, 'succeeded'), done_key(queue, 'failed'),
      done_key(queue, 'cancelled')) == 0 then
    redis.call('SREM', P .. 'queues', queue)
  end
end

-- effective_state: a scheduled job whose run_at has come reads as queued.
local function effective_state(state, run_at, now)
  if state == 'scheduled' and tonumber(run_at) <= now then return 'queued' end
  return state
end
