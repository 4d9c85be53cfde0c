-- cinejobs PostgreSQL schema, version 1. Applied by migrate_broker() (`cinejobs migrate`) inside
-- one transaction holding the schema's advisory lock; :"schema" stands for the quoted schema name
-- (so `psql -v schema=cinejobs -f 0001_init.sql` runs it too).
-- Tables:
--   jobs            one row per job; a job's state only changes in one statement of the broker.
--   schema_version  created by the migrator itself: one row per applied migration.
-- state: 0 scheduled, 1 queued, 2 running, 3 succeeded, 4 failed, 5 cancelled (JobState order).
-- args, kwargs and result are JSON text kept verbatim (text, not jsonb, which re-encodes; not
-- json either, so one malformed result cannot fail a whole batch of acks). Times are epoch ms.
-- Invariants kept by the indexes:
--   * at most one live job (scheduled, queued, running) per unique_key (jobs_unique_live);
--   * reserve reads a queue's due jobs in priority, run_at, insertion order (jobs_ready);
--   * the rescuer and the pruner read only expired leases and finished jobs (jobs_leases,
--     jobs_finished).
CREATE TABLE :"schema".jobs (
  seq bigserial PRIMARY KEY,          -- insertion order, the FIFO tie-break
  id uuid NOT NULL UNIQUE,
  task text NOT NULL,
  queue text NOT NULL,
  args text NOT NULL,
  kwargs text NOT NULL,
  priority integer NOT NULL,
  run_at bigint NOT NULL,
  attempt integer NOT NULL,
  max_attempts integer NOT NULL,
  unique_key text,
  timeout_ms bigint NOT NULL,
  state smallint NOT NULL,
  progress_fraction double precision, -- NULL: no progress reported
  progress_step text,
  progress_message text,
  result text,                        -- JSON text; NULL until succeeded
  error_type text,                    -- NULL: no failure recorded
  error_message text,
  error_traceback text,
  created_at bigint NOT NULL,
  started_at bigint NOT NULL,
  finished_at bigint NOT NULL,
  cancel_requested boolean NOT NULL DEFAULT false,
  lease_token bigint NOT NULL DEFAULT 0,
  lease_until bigint,                 -- epoch ms; set while running
  worker text
);
CREATE INDEX jobs_ready ON :"schema".jobs (queue, priority DESC, run_at, seq)
  WHERE state IN (0, 1);
CREATE UNIQUE INDEX jobs_unique_live ON :"schema".jobs (unique_key)
  WHERE unique_key IS NOT NULL AND state IN (0, 1, 2);
CREATE INDEX jobs_leases ON :"schema".jobs (lease_until) WHERE state = 2;
CREATE INDEX jobs_finished ON :"schema".jobs (finished_at) WHERE state IN (3, 4, 5);
