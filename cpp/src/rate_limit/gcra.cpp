// The GCRA step and pause, and the in-process store built on them. The shared stores compute
// the same step in SQL (sqlite_rate_limit_store.cpp, 0002_rate_limits.sql) and Lua
// (rate_limit.lua); the unit tests pin the maths here.
#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "cinejobs/rate_limiter.hpp"
#include "rate_limit/stores.hpp"

namespace cinejobs {

GcraStep gcra_step(std::int64_t tat, std::int64_t now, const GcraLimit& limit, int n) {
  // A TAT in the past is a full bucket: credit does not pile up beyond `capacity`.
  const std::int64_t new_tat = std::max(tat, now) + limit.interval.count() * n;
  const std::int64_t ahead = new_tat - now;
  if (ahead <= limit.capacity.count()) return GcraStep{{true, Micros(0)}, new_tat};
  return GcraStep{{false, Micros(ahead - limit.capacity.count())}, tat};
}

std::int64_t gcra_pause_tat(std::int64_t tat, std::int64_t now, const GcraLimit& limit,
                            Micros pause) {
  // At now + pause the TAT is capacity - interval ahead: exactly one unit fits.
  return std::max(tat, now + pause.count() + limit.capacity.count() - limit.interval.count());
}

namespace {

class LocalRateLimitStore final : public RateLimitStore {
 public:
  std::string_view kind() const noexcept override { return "local"; }

  RateDecision step(const std::string& key, const GcraLimit& limit, int n) override {
    const std::int64_t now = detail::epoch_micros();
    std::lock_guard lock(mutex_);
    auto it = tats_.find(key);
    const GcraStep s = gcra_step(it == tats_.end() ? 0 : it->second, now, limit, n);
    if (s.decision.allowed) {
      if (it == tats_.end()) {
        forget_idle_locked(now);
        tats_.emplace(key, s.new_tat);
      } else {
        it->second = s.new_tat;
      }
    }
    return s.decision;
  }

  void pause(const std::string& key, const GcraLimit& limit, Micros duration) override {
    const std::int64_t now = detail::epoch_micros();
    std::lock_guard lock(mutex_);
    std::int64_t& tat = tats_[key];
    tat = gcra_pause_tat(tat, now, limit, duration);
  }

 private:
  // A key whose TAT has passed holds no state worth keeping; per-key limits over many keys
  // would otherwise grow the map for ever. Swept when the map doubles, so the cost is amortised.
  void forget_idle_locked(std::int64_t now) {
    if (tats_.size() < sweep_at_) return;
    std::erase_if(tats_, [now](const auto& entry) { return entry.second <= now; });
    sweep_at_ = std::max<std::size_t>(1024, tats_.size() * 2);
  }

  std::mutex mutex_;
  std::unordered_map<std::string, std::int64_t> tats_;
  std::size_t sweep_at_ = 1024;
};

}  // namespace

std::shared_ptr<RateLimitStore> make_local_rate_limit_store() {
  return std::make_shared<LocalRateLimitStore>();
}

}  // namespace cinejobs
