-- 0002_rate_limits: rate limits shared by every worker on the database. One row per limiter key
-- (RateLimiter::store_key: <name length>:<limiter name>[:<key>]) holding its GCRA theoretical
-- arrival time in epoch microseconds of the server's clock; a row whose tat has passed is the same
-- as no row. `admitted` records the last step's decision so that the step, one INSERT ... ON
-- CONFLICT DO UPDATE that locks the row, can return it together with the tat it decided on.
CREATE TABLE :"schema".rate_limits (
  key text PRIMARY KEY,
  tat bigint NOT NULL,
  admitted boolean NOT NULL DEFAULT true
);
