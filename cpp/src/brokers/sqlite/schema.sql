-- cinejobs SQLite schema, version 3 (PRAGMA user_version; 2 added rate_limits, 3 the schedule tables). One table holds every job; a job's
-- state only changes inside an IMMEDIATE transaction of the broker.
-- state: 0 scheduled, 1 queued, 2 running, 3 succeeded, 4 failed, 5 cancelled (JobState order).
-- Invariants kept by the indexes:
--   * at most one live job (scheduled, queued, running) per unique_key (jobs_unique_live);
--   * reserve reads due jobs of a queue in priority, run_at, insertion order (jobs_ready).
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY,           -- insertion order, the FIFO tie-break
  id TEXT NOT NULL UNIQUE,
  task TEXT NOT NULL,
  queue TEXT NOT NULL,
  args TEXT NOT NULL,
  kwargs TEXT NOT NULL,
  priority INTEGER NOT NULL,
  run_at INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  unique_key TEXT,
  timeout_ms INTEGER NOT NULL,
  state INTEGER NOT NULL,
  progress_fraction REAL,            -- NULL: no progress reported
  progress_step TEXT,
  progress_message TEXT,
  result TEXT,                       -- JSON text; NULL until succeeded
  error_type TEXT,                   -- NULL: no failure recorded
  error_message TEXT,
  error_traceback TEXT,
  created_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  lease_token INTEGER NOT NULL DEFAULT 0,
  lease_until INTEGER,               -- epoch ms; set while running
  worker TEXT
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority DESC, run_at) WHERE state IN (0, 1);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live ON jobs (unique_key)
  WHERE unique_key IS NOT NULL AND state IN (0, 1, 2);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_until) WHERE state = 2;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE state IN (3, 4, 5);
-- Schedules: one row per schedule that ever ticked; last_tick only moves forward, and a tick's
-- job is enqueued in the same transaction that moves it, so each tick is enqueued once however
-- many schedulers offer it. schedule_ticks keeps the history of enqueued ticks until pruned.
CREATE TABLE IF NOT EXISTS schedules (
  name TEXT PRIMARY KEY,
  last_tick INTEGER NOT NULL,        -- epoch ms
  next_tick INTEGER NOT NULL,        -- epoch ms; 0 when the schedule has no tick left
  last_job_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_ticks (
  schedule TEXT NOT NULL,
  tick INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  enqueued_at INTEGER NOT NULL,
  PRIMARY KEY (schedule, tick)
);
CREATE INDEX IF NOT EXISTS schedule_ticks_by_tick ON schedule_ticks (tick);
-- Rate limits shared by every process on the file: one row per limiter key holding its GCRA
-- theoretical arrival time (epoch microseconds). A row whose tat has passed is the same as no row.
CREATE TABLE IF NOT EXISTS rate_limits (
  key TEXT PRIMARY KEY,
  tat INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 3;
