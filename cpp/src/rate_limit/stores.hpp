// The shared rate limit stores, one per broker kind, each opened from its broker's URL with the
// broker's own URL parser and connection code. open_rate_limit_store (rate_limiter.cpp) chooses.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "cinejobs/rate_limiter.hpp"

namespace cinejobs::detail {

// epoch_micros: the local clock as epoch microseconds (local and SQLite stores).
std::int64_t epoch_micros() noexcept;

std::shared_ptr<RateLimitStore> open_sqlite_rate_limit_store(std::string_view url);
std::shared_ptr<RateLimitStore> open_redis_rate_limit_store(std::string_view url);
std::shared_ptr<RateLimitStore> open_postgres_rate_limit_store(std::string_view url);

}  // namespace cinejobs::detail
