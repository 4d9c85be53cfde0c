// RAII over libpqxx for the PostgreSQL broker: where a broker connects (PgTarget, for messages
// that name the server without its password), one rethrow_from_pqxx() that turns libpqxx's
// exceptions into cinejobs errors, and a small pool of connections. A connection that broke is
// dropped, never reused; the next use connects afresh, so callers ride through a server restart
// (calls made during the outage throw BrokerUnavailable). Private to the library: libpqxx types
// never reach a public header.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs::detail {

// PgTarget: what libpq is given, and what messages say about it.
struct PgTarget {
  std::string conninfo;  // a libpq URI or key=value string, passed through untouched
  std::string host;      // as parsed from conninfo, for messages ("" when libpq's default)
  std::string port;
  std::string dbname;
  std::string user;
  std::string redacted_url;  // the broker URL with its password masked

  // where names the server and database: "127.0.0.1:5432/jobs".
  std::string where() const;
};

// make_pg_target parses `conninfo` with libpq (PQconninfoParse) to learn host, port, database
// and user. Throws ConfigError with libpq's reason when libpq cannot parse it.
PgTarget make_pg_target(std::string conninfo, std::string redacted_url);

// connect_pg opens a connection. Throws BrokerUnavailable saying what went wrong (server down,
// login refused, no such database) and what to do.
std::unique_ptr<pqxx::connection> connect_pg(const PgTarget& target);

// rethrow_from_pqxx must be called inside a catch block: it rethrows the current exception as a
// cinejobs error naming `context`: BrokerUnavailable for a lost connection, a server shutting
// down, resource exhaustion, serialization failures and deadlocks (retrying may succeed), Error
// for other SQL errors. cinejobs errors pass through unchanged.
[[noreturn]] void rethrow_from_pqxx(const PgTarget& target, std::string_view context);

// connection_lost tells whether the exception in flight means the connection is unusable.
bool connection_lost(const pqxx::connection& conn) noexcept;

// PgPool hands out connections, one user at a time each, connecting on demand and keeping up
// to `max_idle` idle ones. `on_connect` runs on every new connection (it declares the prepared
// statements).
class PgPool {
 public:
  PgPool(PgTarget target, std::function<void(pqxx::connection&)> on_connect,
         std::size_t max_idle = 8);
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  class Lease {
   public:
    Lease(PgPool& pool, std::unique_ptr<pqxx::connection> conn) noexcept
        : pool_(&pool), conn_(std::move(conn)) {}
    ~Lease();
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    pqxx::connection& operator*() const noexcept { return *conn_; }
    pqxx::connection* operator->() const noexcept { return conn_.get(); }
    // discard closes the connection instead of returning it to the pool.
    void discard() noexcept { conn_.reset(); }

   private:
    PgPool* pool_;
    std::unique_ptr<pqxx::connection> conn_;
  };

  // acquire returns an idle connection that still looks alive, or a new one. Throws
  // BrokerUnavailable when a new one cannot be opened.
  Lease acquire();
  const PgTarget& target() const noexcept { return target_; }

  // run calls f(connection) on a pooled connection, translating libpqxx errors (context names
  // the operation) and dropping the connection when it broke.
  template <class F>
  auto run(std::string_view context, F&& f) {
    Lease lease = acquire();
    try {
      return f(*lease);
    } catch (...) {
      if (connection_lost(*lease)) lease.discard();
      rethrow_from_pqxx(target_, context);
    }
  }

 private:
  void give_back(std::unique_ptr<pqxx::connection> conn) noexcept;

  PgTarget target_;
  std::function<void(pqxx::connection&)> on_connect_;
  std::size_t max_idle_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
};

}  // namespace cinejobs::detail
