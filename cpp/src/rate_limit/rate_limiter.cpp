#include "cinejobs/rate_limiter.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>

#include "cinejobs/errors.hpp"
#include "cinejobs/metrics.hpp"
#include "cinejobs/redact.hpp"
#include "rate_limit/stores.hpp"
#include "shared_per_url.hpp"

namespace cinejobs {

namespace detail {

std::int64_t epoch_micros() noexcept {
  return std::chrono::duration_cast<Micros>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace detail

std::shared_ptr<RateLimitStore> open_rate_limit_store(std::string_view url) {
  // One store per URL in a process: limiters of many tasks share its connections.
  return detail::shared_per_url<RateLimitStore>(
      url, [](std::string_view where) -> std::shared_ptr<RateLimitStore> {
        const std::string_view scheme = where.substr(0, where.find("://"));
        if (where == "local") {
          return make_local_rate_limit_store();
        } else if (scheme == "sqlite") {
          return detail::open_sqlite_rate_limit_store(where);
        } else if (scheme == "redis" || scheme == "unix") {
          return detail::open_redis_rate_limit_store(where);
        } else if (scheme == "postgres" || scheme == "postgresql") {
          return detail::open_postgres_rate_limit_store(where);
        } else {
          throw ConfigError("cannot keep rate limits at '" + redact_url(where) +
                            "': give \"local\" or a broker URL (sqlite:///path.db, "
                            "redis://host:port/db, postgresql://host/db)");
        }
      });
}

RateLimiter::RateLimiter(std::shared_ptr<RateLimitStore> store, std::string name, Rate rate,
                         int burst)
    : store_(std::move(store)),
      name_(std::move(name)),
      rate_(rate),
      burst_(burst),
      limit_(gcra_limit(rate, burst)) {
  if (!store_) throw ConfigError("rate limiter '" + name_ + "' has no store");
  if (name_.empty()) throw ConfigError("a rate limiter needs a non-empty name");
}

std::string RateLimiter::store_key(std::string_view key) const {
  // <length of name>:<name>[:<key>]. The length says where the name ends, so no name and key
  // share a bucket with another pair that joins to the same text ("task:a" with key "b" and
  // "task:a:b" without one).
  std::string out = std::to_string(name_.size());
  out.reserve(out.size() + name_.size() + 2 + key.size());
  out.append(":").append(name_);
  if (!key.empty()) out.append(":").append(key);
  return out;
}

RateDecision RateLimiter::try_acquire(int n, std::string_view key) {
  if (n < 1 || n > burst_) {
    throw ConfigError("rate limiter '" + name_ + "' cannot take " + std::to_string(n) +
                      " units at once: give 1.." + std::to_string(burst_) +
                      " (its burst; more could never be admitted)");
  }
  return store_->step(store_key(key), limit_, n);
}

bool RateLimiter::acquire(int n, const AcquireOptions& options, std::string_view key) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = options.timeout < std::chrono::milliseconds::zero()
                            ? Clock::time_point::max()
                            : Clock::now() + options.timeout;
  std::mutex mutex;
  std::condition_variable_any never_notified;  // the wait ends by time or by the stop token
  bool waited = false;
  for (;;) {
    if (options.stop.stop_requested()) return false;
    const RateDecision decision = try_acquire(n, key);
    if (decision.allowed) return true;
    const auto next_try = Clock::now() + decision.wait;
    if (next_try > deadline) return false;  // waiting cannot help: say so now
    if (!waited) {
      waited = true;  // one wait per call, however many times the store is asked again
      count_rate_limit_wait(name_);
    }
    for (auto now = Clock::now(); now < next_try; now = Clock::now()) {
      auto until = next_try;
      if (options.on_wake) until = std::min(until, now + options.wake_every);
      {
        std::unique_lock lock(mutex);
        never_notified.wait_until(lock, options.stop, until, [] { return false; });
      }
      if (options.stop.stop_requested()) return false;
      if (options.on_wake) options.on_wake();
    }
  }
}

void RateLimiter::pause_for(std::chrono::milliseconds duration, std::string_view key) {
  if (duration <= std::chrono::milliseconds::zero()) return;
  store_->pause(store_key(key), limit_, duration);
}

std::chrono::milliseconds RateLimiter::snooze_delay(Micros wait) const {
  using std::chrono::milliseconds;
  // Every caller of snooze_delay holds a job back by its answer: that is the snooze counted.
  count_rate_limit_wait(name_);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto wait_ms = std::chrono::ceil<milliseconds>(std::max(wait, Micros::zero()));
  const auto spread = std::min(std::chrono::floor<milliseconds>(rate_.period),
                               wait_ms + milliseconds(std::chrono::seconds(1)));
  std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(0, spread.count()));
  return wait_ms + milliseconds(jitter(rng));
}

}  // namespace cinejobs
