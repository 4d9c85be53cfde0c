// Rate limits in the SQLite broker's file (table rate_limits, schema.sql): each step is one
// IMMEDIATE transaction that reads the key's TAT, applies gcra_step and writes the new TAT when
// it admits. The write lock orders every process on the file, and they share one clock.
#include <mutex>

#include "brokers/sqlite/sqlite_broker.hpp"
#include "brokers/sqlite/sqlite_handle.hpp"
#include "rate_limit/stores.hpp"

namespace cinejobs::detail {
namespace {

class SqliteRateLimitStore final : public RateLimitStore {
 public:
  explicit SqliteRateLimitStore(const SqliteConfig& config)
      : db_(config.path, config.busy_timeout, config.synchronous_full) {
    migrate_sqlite(db_);
    read_ = std::make_unique<SqliteStatement>(db_, "SELECT tat FROM rate_limits WHERE key = ?1");
    write_ =
        std::make_unique<SqliteStatement>(db_,
                                          "INSERT INTO rate_limits (key, tat) VALUES (?1, ?2) "
                                          "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat");
  }

  std::string_view kind() const noexcept override { return "sqlite"; }

  RateDecision step(const std::string& key, const GcraLimit& limit, int n) override {
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    const std::int64_t now = epoch_micros();  // read under the lock: the TAT it is compared to
    const GcraStep s = gcra_step(read_locked(key), now, limit, n);
    if (s.decision.allowed) write_locked(key, s.new_tat);
    tx.commit();
    return s.decision;
  }

  void pause(const std::string& key, const GcraLimit& limit, Micros duration) override {
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    const std::int64_t now = epoch_micros();
    write_locked(key, gcra_pause_tat(read_locked(key), now, limit, duration));
    tx.commit();
  }

 private:
  std::int64_t read_locked(const std::string& key) {
    StatementScope scope(*read_);
    read_->bind(1, std::string_view(key));
    return read_->step() ? read_->column_int(0) : 0;
  }

  void write_locked(const std::string& key, std::int64_t tat) {
    StatementScope scope(*write_);
    write_->bind(1, std::string_view(key)).bind(2, tat);
    write_->step();
  }

  SqliteDatabase db_;  // declared before the statements so it outlives them
  std::mutex mutex_;   // one connection: every use is serialised
  std::unique_ptr<SqliteStatement> read_, write_;
};

}  // namespace

std::shared_ptr<RateLimitStore> open_sqlite_rate_limit_store(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to a rate limit
  return std::make_shared<SqliteRateLimitStore>(parse_sqlite_url(url, unused));
}

}  // namespace cinejobs::detail
