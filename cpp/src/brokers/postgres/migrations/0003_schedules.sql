-- cinejobs PostgreSQL schema, version 3: schedules. :"schema" stands for the quoted schema name.
-- Tables:
--   schedules       one row per schedule that ever ticked. last_tick only moves forward, and a
--                   tick's job is inserted in the same transaction whose upsert moved it (the
--                   upsert locks the row), so each tick is enqueued once however many
--                   schedulers offer it.
--   schedule_ticks  the history of enqueued ticks, pruned by tick age.
-- Times are epoch ms.
CREATE TABLE :"schema".schedules (
  name text PRIMARY KEY,
  last_tick bigint NOT NULL,
  next_tick bigint NOT NULL,          -- 0 when the schedule has no tick left
  last_job_id text NOT NULL
);
CREATE TABLE :"schema".schedule_ticks (
  schedule text NOT NULL,
  tick bigint NOT NULL,
  job_id text NOT NULL,
  enqueued_at bigint NOT NULL,
  PRIMARY KEY (schedule, tick)
);
CREATE INDEX schedule_ticks_by_tick ON :"schema".schedule_ticks (tick);
