// SqliteBroker: the embedded default broker, one SQLite file in WAL mode shared by any number of
// threads and processes on one machine. Every state change is one IMMEDIATE transaction; reserve,
// ack and fail take whole batches. SQLite cannot signal other processes, so idle workers poll
// (WorkerOptions::poll_interval); enqueues in the same process wake them at once.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cinejobs/broker.hpp"

namespace cinejobs::detail {

struct SqliteConfig {
  std::string path;
  // How long a statement waits for another process's write lock before failing.
  std::chrono::milliseconds busy_timeout = std::chrono::seconds(10);
  bool synchronous_full = false;
};

std::shared_ptr<Broker> open_sqlite_broker(std::string url, SqliteConfig config,
                                           BrokerOptions options);

}  // namespace cinejobs::detail
