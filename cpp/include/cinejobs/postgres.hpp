// PostgreSQL specifics that callers outside the broker need: the statement that enqueues one job
// through someone else's connection. Python's cinejobs.postgres.enqueue runs it on the caller's
// psycopg or Django connection, inside the caller's transaction, so the job exists if and only if
// that transaction commits. The SQL lives here, in one place, next to the broker that runs it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/job.hpp"

namespace cinejobs {

// A statement parameter: NULL, an integer or text.
using SqlParam = std::variant<std::monostate, std::int64_t, std::string>;

struct SqlStatement {
  std::string sql;  // with %s placeholders (psycopg, DB-API "format" style); no literal '%'
  std::vector<SqlParam> params;
};

// postgres_enqueue_statement validates `job` exactly as enqueue does (validate_new_job; throws
// InvalidPayload) and returns one INSERT into `schema`.jobs that stores it: the id is filled in
// when empty, created_at and the scheduled/queued state come from now. Executed, it returns one
// row (id, created): created is false when a live job holds the unique key, id then names that
// job. It returns no row in the rare case where that holder committed after the caller's snapshot
// was taken (REPEATABLE READ, or a concurrent commit); treat it as not created. Workers are
// notified (pg_notify) when the caller's transaction commits. Throws ConfigError for a schema name
// that is not a plain identifier.
SqlStatement postgres_enqueue_statement(std::string_view schema, const Job& job,
                                        const BrokerOptions& options = {});

}  // namespace cinejobs
