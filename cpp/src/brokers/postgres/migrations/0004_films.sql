-- cinejobs PostgreSQL schema, version 4: the response cache and the film tables of the TMDB
-- enrichment pipeline. :"schema" stands for the quoted schema name. Times are epoch ms.
--   response_cache  HTTP responses (TMDB's) by request key (method, path and query without
--                   credentials); a row past expires_at is the same as no row.
--   film_sessions   one imported film list each. Each film's final state decrements remaining
--                   in the same transaction (the row lock orders concurrent finishes), which
--                   sets finished_at when it reaches zero.
--   films           one row per input line, searchable (search_key) from the moment it is
--                   ingested. status: pending, enriched, not_found or failed; a final status is
--                   never changed, so a film finished before a crash is not enriched again.
CREATE TABLE :"schema".response_cache (
  key text PRIMARY KEY,
  body text NOT NULL,
  expires_at bigint NOT NULL
);
CREATE INDEX response_cache_expiry ON :"schema".response_cache (expires_at);
CREATE TABLE :"schema".film_sessions (
  id text PRIMARY KEY,
  source text NOT NULL,
  total integer NOT NULL,
  remaining integer NOT NULL,  -- films without a final state
  created_at bigint NOT NULL,
  finished_at bigint
);
CREATE TABLE :"schema".films (
  session_id text NOT NULL REFERENCES :"schema".film_sessions (id) ON DELETE CASCADE,
  position integer NOT NULL,
  input text NOT NULL,
  title text NOT NULL,
  year integer,
  original_title text NOT NULL DEFAULT '',
  kind text NOT NULL DEFAULT 'movie',
  season integer,
  episode integer,
  search_key text NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'enriched', 'not_found', 'failed')),
  tmdb_id bigint,
  confidence double precision,
  query text,
  record jsonb,
  error text,
  finished_at bigint,
  synced_at bigint,
  PRIMARY KEY (session_id, position)
);
CREATE INDEX films_by_search_key ON :"schema".films (search_key);
CREATE INDEX films_unsynced ON :"schema".films (session_id)
  WHERE status = 'enriched' AND synced_at IS NULL;
