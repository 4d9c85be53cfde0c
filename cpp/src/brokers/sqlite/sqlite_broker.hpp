// SqliteBroker: the embedded default broker, one SQLite file in WAL mode shared by any number of
// threads and processes on one machine. Every state change is one IMMEDIATE transaction; reserve,
// ack and fail take whole batches. SQLite cannot signal other processes, so idle workers poll
// (WorkerOptions::poll_interval); enqueues in the same process wake them at once.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "cinejobs/broker.hpp"

namespace cinejobs::detail {

struct SqliteConfig {
  std::string path;
  // How long a statement waits for another process's write lock before failing.
  std::chrono::milliseconds busy_timeout = std::chrono::seconds(10);
  bool synchronous_full = false;
};

// parse_sqlite_url reads sqlite:///relative.db and sqlite:////absolute.db URLs with the query
// parameters busy_timeout_ms, synchronous (normal or full) and the common result_ttl_s and
// max_payload_bytes (which update `options`). Throws ConfigError naming what is wrong. (Defined in
// broker_url.cpp, the one place URLs are parsed.)
SqliteConfig parse_sqlite_url(std::string_view url, BrokerOptions& options);

class SqliteDatabase;
// migrate_sqlite creates or upgrades the cinejobs schema in `db` (the jobs table and the rate
// limit table), refusing a database of a newer version with ConfigError.
void migrate_sqlite(SqliteDatabase& db);

std::shared_ptr<Broker> open_sqlite_broker(std::string url, SqliteConfig config,
                                           BrokerOptions options);

}  // namespace cinejobs::detail
