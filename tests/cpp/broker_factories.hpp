// Broker factories for the conformance suite. Each broker kind adds one BrokerFactory to
// broker_factories(); the suite runs every test body against each. A factory makes isolated stores
// (a temporary SQLite file, a Redis key prefix or a PostgreSQL schema), and a store opens
// any number of independent broker instances onto itself: the first is the broker a test uses,
// further ones stand for other workers or processes sharing the store.
#pragma once

#include <sqlite3.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "cinejobs/broker.hpp"
#include "postgres_server.hpp"
#include "redis_server.hpp"
#include "test_support.hpp"

namespace cinejobs::test {

// BrokerStore: one isolated, initially empty store, deleted when the store is destroyed.
class BrokerStore {
 public:
  virtual ~BrokerStore() = default;
  // open returns a NEW broker instance with its own connection(s) onto this store. Each call is
  // independent of the others, and it is safe to call in a child process after fork() (the child
  // must then use only the brokers it opened itself).
  virtual std::shared_ptr<Broker> open(const BrokerOptions& options) = 0;
  std::shared_ptr<Broker> open() { return open(BrokerOptions{}); }
  // corrupt_job damages the stored document of job `id` behind the broker's back, as a hand
  // edit or a damaged store would, through the store's own raw access: a Redis hash field whose
  // packing is broken, a SQL row whose args are not JSON.
  virtual void corrupt_job(const std::string& id) = 0;
};

struct BrokerFactory {
  // name is the broker kind (Broker::kind()), also used as the gtest parameter name.
  std::string name;
  // make_store creates a fresh isolated store.
  std::function<std::unique_ptr<BrokerStore>()> make_store;
};

// PrintTo names the factory in gtest messages instead of dumping its bytes.
inline void PrintTo(const BrokerFactory& factory, std::ostream* os) { *os << factory.name; }

// SqliteStore: a database file in a fresh temporary directory.
class SqliteStore final : public BrokerStore {
 public:
  std::shared_ptr<Broker> open(const BrokerOptions& options) override {
    return open_broker(url(), options);
  }
  using BrokerStore::open;
  std::string url() const { return sqlite_url(dir_.path()); }
  void corrupt_job(const std::string& id) override {
    sqlite3* db = nullptr;
    const std::string path = dir_.path() + "/jobs.db";
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> owner(
        sqlite3_open(path.c_str(), &db) == SQLITE_OK ? db : nullptr, &sqlite3_close);
    if (!owner) throw std::runtime_error("cannot open " + path);
    sqlite3_busy_timeout(db, 5000);
    const std::string sql = "UPDATE jobs SET args = '[1, 2' WHERE id = '" + id + "'";
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK ||
        sqlite3_changes(db) != 1) {
      throw std::runtime_error("cannot corrupt job " + id + ": " + sqlite3_errmsg(db));
    }
  }

 private:
  TempDir dir_;
};

inline BrokerFactory sqlite_factory() {
  return {"sqlite", [] { return std::make_unique<SqliteStore>(); }};
}

// PostgresStore: a fresh, migrated schema in the process's server, dropped on destruction.
class PostgresStore final : public BrokerStore {
 public:
  PostgresStore() : server_(PostgresServer::instance()), schema_(random_schema()) {
    migrate_broker(url());
  }
  ~PostgresStore() override {
    if (getpid() != owner_) return;
    try {
      server_.sql("DROP SCHEMA IF EXISTS \"" + schema_ + "\" CASCADE");
    } catch (...) {
      // The schema is left behind in a throwaway server; nothing else to do in a destructor.
    }
  }
  std::shared_ptr<Broker> open(const BrokerOptions& options) override {
    return open_broker(url(), options);
  }
  using BrokerStore::open;
  std::string url() const { return server_.url() + "?schema=" + schema_; }
  const std::string& schema() const noexcept { return schema_; }
  void corrupt_job(const std::string& id) override {
    server_.sql("UPDATE \"" + schema_ + "\".jobs SET args = '[1, 2' WHERE id = '" + id + "'");
  }

 private:
  PostgresServer& server_;
  std::string schema_;
  pid_t owner_ = getpid();
};

inline BrokerFactory postgres_factory() {
  return {"postgres", [] { return std::make_unique<PostgresStore>(); }};
}

// RedisStore: a fresh random key prefix on the process's redis-server (nothing is flushed; the
// server and its keys go when the test process exits).
class RedisStore final : public BrokerStore {
 public:
  RedisStore() : server_(RedisServer::shared()), prefix_(random_prefix()) {}
  std::shared_ptr<Broker> open(const BrokerOptions& options) override {
    return open_broker(url(), options);
  }
  using BrokerStore::open;
  std::string url() const { return server_.url(prefix_); }
  const std::string& prefix() const noexcept { return prefix_; }
  // The packed field d claims 9999 bytes of task name that are not there.
  void corrupt_job(const std::string& id) override {
    server_.call({"HSET", prefix_ + "job:" + id, "d", "9999:truncated"});
  }

 private:
  RedisServer& server_;
  std::string prefix_;
};

inline BrokerFactory redis_factory() {
  return {"redis", [] { return std::make_unique<RedisStore>(); }};
}

// keep_location makes a fresh Store (a SQLite file, a Redis key prefix, a PostgreSQL schema),
// keeps it in `keep` for as long as the test holds that, and returns its URL: for the stores
// opened from broker URLs (rate limits, response caches, films).
template <class Store>
std::string keep_location(std::vector<std::shared_ptr<void>>& keep) {
  auto store = std::make_shared<Store>();
  keep.push_back(store);
  return store->url();
}

// broker_factories lists every broker kind the conformance suite runs against. Redis and
// PostgreSQL are left out only where they are not installed and the tests do not run in CI.
inline std::vector<BrokerFactory> broker_factories() {
  std::vector<BrokerFactory> factories = {sqlite_factory()};
  if (RedisServer::available() || in_ci()) factories.push_back(redis_factory());
  if (PostgresServer::available() || in_ci()) factories.push_back(postgres_factory());
  return factories;
}

}  // namespace cinejobs::test
