-- cinejobs SQLite schema, version 4 (PRAGMA user_version; 2 added rate_limits, 3 the schedule
-- tables, 4 the response cache and the film tables). One table holds every job; a job's
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
-- Cached HTTP responses (TMDB's), by request key (method, path and query without credentials).
-- A row past expires_at (epoch ms) is the same as no row; pruning removes it.
CREATE TABLE IF NOT EXISTS response_cache (
  key TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Enrichment sessions: one imported film list each. Each film's final state decrements remaining
-- in the same transaction, which sets finished_at (epoch ms) when it reaches zero.
CREATE TABLE IF NOT EXISTS film_sessions (
  id TEXT PRIMARY KEY,
  source TEXT NOT NULL,              -- where the list came from: a file name, "api", ...
  total INTEGER NOT NULL,
  remaining INTEGER NOT NULL,        -- films without a final state
  created_at INTEGER NOT NULL,
  finished_at INTEGER
);
-- Films of a session, one row per input line, searchable (search_key) from the moment they are
-- ingested. status: pending, enriched, not_found or failed; a final status is never changed, so
-- a film finished before a crash is not enriched again. record is the enriched JSON document.
CREATE TABLE IF NOT EXISTS films (
  session_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  input TEXT NOT NULL,
  title TEXT NOT NULL,
  year INTEGER,
  original_title TEXT NOT NULL DEFAULT '',
  kind TEXT NOT NULL DEFAULT 'movie',  -- movie or episode
  season INTEGER,
  episode INTEGER,
  search_key TEXT NOT NULL,            -- normalize_title(title)
  status TEXT NOT NULL DEFAULT 'pending',
  tmdb_id INTEGER,
  confidence REAL,
  query TEXT,
  record TEXT,
  error TEXT,
  finished_at INTEGER,
  synced_at INTEGER,
  PRIMARY KEY (session_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS films_by_search_key ON films (search_key);
CREATE INDEX IF NOT EXISTS films_unsynced ON films (session_id) WHERE status = 'enriched' AND synced_at IS NULL;
PRAGMA user_version = 4;
