// The response cache stores, one per broker kind, each opened from its broker's URL with the
// broker's own URL parser and connection code, and the in-process memory cache.
// open_response_cache (response_cache.cpp) chooses.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "cinejobs/response_cache.hpp"

namespace cinejobs::detail {

// epoch_ms_now: the local clock as epoch milliseconds (memory and SQLite caches).
std::int64_t epoch_ms_now() noexcept;

// MemoryResponseCache keeps entries in this process's memory, behind one mutex. Expired entries
// are dropped when read, by prune(), and whenever the map has doubled since the last sweep; it
// never holds more than max_entries: when full, the tenth closest to expiry is evicted.
class MemoryResponseCache final : public ResponseCache {
 public:
  using Clock = std::function<std::int64_t()>;  // epoch milliseconds

  explicit MemoryResponseCache(std::size_t max_entries = 100'000, Clock clock = epoch_ms_now);

  std::string_view kind() const noexcept override { return "memory"; }
  std::optional<std::string> get(const std::string& key) override;
  void put(const std::string& key, std::string_view body, std::chrono::seconds ttl) override;
  std::size_t prune() override;
  std::size_t size() const;

 private:
  struct Entry {
    std::string body;
    std::int64_t expires_at = 0;  // epoch ms
  };
  std::size_t prune_locked(std::int64_t now);
  void evict_locked();

  std::size_t max_entries_;
  Clock clock_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::size_t sweep_at_;  // size at which put() next sweeps expired entries
};

std::shared_ptr<ResponseCache> open_sqlite_response_cache(std::string_view url);
std::shared_ptr<ResponseCache> open_redis_response_cache(std::string_view url);
std::shared_ptr<ResponseCache> open_postgres_response_cache(std::string_view url);

}  // namespace cinejobs::detail
