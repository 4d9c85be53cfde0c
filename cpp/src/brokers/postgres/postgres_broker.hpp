// PostgresBroker: jobs in one table of a PostgreSQL schema, shared by any number of workers on any
// number of machines. Every state change is one statement (its own transaction): reserve takes a
// batch with FOR UPDATE SKIP LOCKED, ack, fail, release and extend take whole batches as arrays,
// enqueue_many inserts a batch in one statement. Enqueues, retries, releases and recoveries send
// pg_notify('<schema>_jobs', queue) inside their transaction; idle workers wait on a LISTEN
// connection and wake within milliseconds of the commit. Connections come from a small pool; a
// broken one is dropped and the next call reconnects.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cinejobs/broker.hpp"

namespace cinejobs::detail {

struct PostgresConfig {
  // The broker URL without cinejobs' own query parameters: what libpq is given, so every libpq
  // parameter (sslmode, sslrootcert, connect_timeout, options, ...) passes through untouched.
  std::string conninfo;
  std::string schema = "cinejobs";
  // migrate=true in the URL: apply pending migrations when opening (tests, demos). Otherwise
  // opening refuses a schema that is not migrated.
  bool migrate = false;
  // The URL with its password masked, for messages.
  std::string redacted_url;
};

// parse_postgres_url splits a postgres:// or postgresql:// URL into the libpq part and cinejobs'
// parameters (schema, migrate, and the common result_ttl_s and max_payload_bytes, which update
// `options`). Throws ConfigError for a malformed URL or schema name.
PostgresConfig parse_postgres_url(std::string_view url, BrokerOptions& options);

std::shared_ptr<Broker> open_postgres_broker(std::string url, PostgresConfig config,
                                             BrokerOptions options);

// migrate_postgres applies the pending migrations (see cinejobs/migrate.hpp).
std::vector<int> migrate_postgres(const PostgresConfig& config);

// The schema version this cinejobs knows (the newest migration).
int postgres_schema_version() noexcept;

// check_schema_name throws ConfigError unless `schema` is a plain identifier (letters, digits,
// underscores, not starting with a digit, at most 58 bytes so '<schema>_jobs' is a valid channel).
void check_schema_name(std::string_view schema);

}  // namespace cinejobs::detail
