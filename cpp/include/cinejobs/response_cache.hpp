// ResponseCache: HTTP response bodies by request key, kept for a time to live in the broker's
// own store (SQLite and PostgreSQL table response_cache, Redis keys with an expiry), so that
// every worker of an app shares one cache and re-enriching known titles makes no request.
// Keys are whatever the caller chooses (the TMDB client uses the request path and query without
// credentials); an expired entry is the same as a missing one.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cinejobs {

class ResponseCache {
 public:
  virtual ~ResponseCache() = default;
  // kind: "memory", "sqlite", "redis" or "postgres".
  virtual std::string_view kind() const noexcept = 0;
  // get returns the body stored under key, or nullopt when there is none or it has expired.
  virtual std::optional<std::string> get(const std::string& key) = 0;
  // put stores body under key for ttl (replacing what was there).
  virtual void put(const std::string& key, std::string_view body, std::chrono::seconds ttl) = 0;
  // prune removes expired entries and returns how many went (Redis expires its own: 0).
  virtual std::size_t prune() = 0;
};

// open_response_cache opens the cache for "memory" (this process only) or a broker URL
// (sqlite://, redis://, unix://, postgresql://, with that broker's query parameters). Caches of
// one URL are shared within the process. Throws ConfigError for a malformed URL or a PostgreSQL
// schema not migrated to version 4, BrokerUnavailable when the store cannot be reached.
std::shared_ptr<ResponseCache> open_response_cache(std::string_view url);

}  // namespace cinejobs
