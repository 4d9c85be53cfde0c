#include "cinejobs/response_cache.hpp"

#include <algorithm>
#include <vector>

#include "cache/stores.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/redact.hpp"
#include "shared_per_url.hpp"

namespace cinejobs {

namespace detail {

std::int64_t epoch_ms_now() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

MemoryResponseCache::MemoryResponseCache(std::size_t max_entries, Clock clock)
    : max_entries_(std::max<std::size_t>(max_entries, 1)),
      clock_(std::move(clock)),
      sweep_at_(std::min<std::size_t>(1024, max_entries_ + 1)) {}

std::optional<std::string> MemoryResponseCache::get(const std::string& key) {
  const std::int64_t now = clock_();
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires_at <= now) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.body;
}

void MemoryResponseCache::put(const std::string& key, std::string_view body,
                              std::chrono::seconds ttl) {
  const std::int64_t now = clock_();
  std::lock_guard lock(mutex_);
  if (ttl <= std::chrono::seconds::zero()) {
    entries_.erase(key);  // expired at once: the same as no entry
    return;
  }
  const std::int64_t expires_at =
      now + std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count();
  entries_.insert_or_assign(key, Entry{std::string(body), expires_at});
  if (entries_.size() >= sweep_at_) {
    prune_locked(now);
    if (entries_.size() > max_entries_) evict_locked();
    sweep_at_ = std::min(max_entries_ + 1, std::max<std::size_t>(1024, 2 * entries_.size()));
  }
}

std::size_t MemoryResponseCache::prune() {
  const std::int64_t now = clock_();
  std::lock_guard lock(mutex_);
  return prune_locked(now);
}

std::size_t MemoryResponseCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::size_t MemoryResponseCache::prune_locked(std::int64_t now) {
  return static_cast<std::size_t>(
      std::erase_if(entries_, [now](const auto& item) { return item.second.expires_at <= now; }));
}

// evict_locked drops the entries closest to expiry until a tenth of the room is free again, so
// that a full cache does not sort itself on every put.
void MemoryResponseCache::evict_locked() {
  const std::size_t keep = max_entries_ - max_entries_ / 10;
  if (entries_.size() <= keep) return;
  std::vector<std::int64_t> expiries;
  expiries.reserve(entries_.size());
  for (const auto& [key, entry] : entries_) expiries.push_back(entry.expires_at);
  const std::size_t drop = entries_.size() - keep;
  std::nth_element(expiries.begin(), expiries.begin() + static_cast<std::ptrdiff_t>(drop - 1),
                   expiries.end());
  const std::int64_t cutoff = expiries[drop - 1];
  std::size_t dropped = 0;
  for (auto it = entries_.begin(); it != entries_.end() && dropped < drop;) {
    if (it->second.expires_at <= cutoff) {
      it = entries_.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
}

}  // namespace detail

std::shared_ptr<ResponseCache> open_response_cache(std::string_view url) {
  // One cache per URL in a process: every client of an app shares its entries and connections.
  return detail::shared_per_url<ResponseCache>(
      url, [](std::string_view where) -> std::shared_ptr<ResponseCache> {
        const std::string_view scheme = where.substr(0, where.find("://"));
        if (where == "memory") {
          return std::make_shared<detail::MemoryResponseCache>();
        } else if (scheme == "sqlite") {
          return detail::open_sqlite_response_cache(where);
        } else if (scheme == "redis" || scheme == "unix") {
          return detail::open_redis_response_cache(where);
        } else if (scheme == "postgres" || scheme == "postgresql") {
          return detail::open_postgres_response_cache(where);
        } else {
          throw ConfigError("cannot keep a response cache at '" + redact_url(where) +
                            "': give \"memory\" or a broker URL (sqlite:///path.db, "
                            "redis://host:port/db, postgresql://host/db)");
        }
      });
}

}  // namespace cinejobs
