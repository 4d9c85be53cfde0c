// The response cache in the SQLite broker's file (table response_cache, schema.sql version 4):
// one statement per call on the broker's file, expiry judged by this machine's clock (every
// process on the file shares it). Reads take no write lock; a put is one upsert.
#include <mutex>

#include "brokers/sqlite/sqlite_broker.hpp"
#include "brokers/sqlite/sqlite_handle.hpp"
#include "cache/stores.hpp"

namespace cinejobs::detail {
namespace {

class SqliteResponseCache final : public ResponseCache {
 public:
  explicit SqliteResponseCache(const SqliteConfig& config)
      : db_(config.path, config.busy_timeout, config.synchronous_full) {
    migrate_sqlite(db_);
    read_ = std::make_unique<SqliteStatement>(
        db_, "SELECT body FROM response_cache WHERE key = ?1 AND expires_at > ?2");
    write_ = std::make_unique<SqliteStatement>(
        db_,
        "INSERT INTO response_cache (key, body, expires_at) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at");
    erase_ = std::make_unique<SqliteStatement>(db_, "DELETE FROM response_cache WHERE key = ?1");
    prune_ =
        std::make_unique<SqliteStatement>(db_, "DELETE FROM response_cache WHERE expires_at <= ?1");
  }

  std::string_view kind() const noexcept override { return "sqlite"; }

  std::optional<std::string> get(const std::string& key) override {
    std::lock_guard lock(mutex_);
    StatementScope scope(*read_);
    read_->bind(1, std::string_view(key)).bind(2, epoch_ms_now());
    if (!read_->step()) return std::nullopt;
    return read_->column_text(0);
  }

  void put(const std::string& key, std::string_view body, std::chrono::seconds ttl) override {
    std::lock_guard lock(mutex_);
    if (ttl <= std::chrono::seconds::zero()) {
      StatementScope scope(*erase_);
      erase_->bind(1, std::string_view(key));
      erase_->step();
      return;
    }
    const std::int64_t expires_at =
        epoch_ms_now() + std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count();
    StatementScope scope(*write_);
    write_->bind(1, std::string_view(key)).bind(2, body).bind(3, expires_at);
    write_->step();
  }

  std::size_t prune() override {
    std::lock_guard lock(mutex_);
    StatementScope scope(*prune_);
    prune_->bind(1, epoch_ms_now());
    prune_->step();
    return static_cast<std::size_t>(db_.changes());
  }

 private:
  SqliteDatabase db_;  // declared before the statements so it outlives them
  std::mutex mutex_;   // one connection: every use is serialised
  std::unique_ptr<SqliteStatement> read_, write_, erase_, prune_;
};

}  // namespace

std::shared_ptr<ResponseCache> open_sqlite_response_cache(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to a cache
  return std::make_shared<SqliteResponseCache>(parse_sqlite_url(url, unused));
}

}  // namespace cinejobs::detail
