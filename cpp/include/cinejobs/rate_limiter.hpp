// RateLimiter: a limit of `count` units per `period`, with bursts of up to `burst` units at once,
// held by the generic cell rate algorithm (GCRA, a token bucket kept as one timestamp per key:
// the theoretical arrival time, TAT). A store keeps the TATs: in-process (local), or shared
// through the broker's store (SQLite table, PostgreSQL table, Redis key) so that one limit holds
// across every thread, process and machine using it. Each admission decision is one atomic step
// of the store (a transaction, a statement, a Lua script) and costs one round trip; nothing is
// written for a refused request except on PostgreSQL, which records the refusal to read the TAT
// back in the same statement.
//
// Guarantee: in any window of length `period`, at most count + burst units are admitted (at most
// burst + count - 1 in a half-open window). Shared stores use one clock for every caller: the
// Redis or PostgreSQL server's; SQLite, which is on one machine, uses that machine's.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

namespace cinejobs {

using Micros = std::chrono::microseconds;

// Rate: `count` units per `period`.
struct Rate {
  std::int64_t count = 1;
  Micros period = std::chrono::seconds(1);
  bool operator==(const Rate&) const = default;
};

// parse_rate reads "<count>/<period>": "20/s", "40/10s", "100/m", "5/h", "1000/d", "3/500ms"
// (units ms, s, m, h, d, each with an optional positive integer multiplier). Throws ConfigError
// quoting the text and saying what was wrong.
Rate parse_rate(std::string_view text);
// to_string writes a rate back in the form parse_rate reads.
std::string to_string(const Rate& rate);

// GcraLimit: what a store needs to decide for one key.
struct GcraLimit {
  Micros interval{0};  // period / count: one unit every interval on average
  Micros capacity{0};  // burst * interval: how far ahead of now the TAT may run
};

// gcra_limit checks `burst` (at least 1) and the rate (count at least 1, interval at least one
// microsecond), throwing ConfigError, and returns the limit.
GcraLimit gcra_limit(const Rate& rate, int burst);

// RateDecision: `allowed`, or refused with `wait`, how long until the same request would be
// admitted if nobody else took units meanwhile.
struct RateDecision {
  bool allowed = false;
  Micros wait{0};
};

// GcraStep: the one GCRA step every store computes (the SQL and Lua follow it exactly). `tat`
// is the key's stored TAT in epoch microseconds (0 for a key never seen); on admission the
// store writes `new_tat`.
struct GcraStep {
  RateDecision decision;
  std::int64_t new_tat = 0;
};
GcraStep gcra_step(std::int64_t tat, std::int64_t now, const GcraLimit& limit, int n);
// gcra_pause_tat returns the TAT that admits nothing before now + pause, and then one unit
// every interval (no burst right after a pause: the upstream that asked for it is fragile).
std::int64_t gcra_pause_tat(std::int64_t tat, std::int64_t now, const GcraLimit& limit,
                            Micros pause);

// RateLimitStore keeps TATs by key. Safe to share between threads.
class RateLimitStore {
 public:
  virtual ~RateLimitStore() = default;
  // kind: "local", "sqlite", "redis" or "postgres".
  virtual std::string_view kind() const noexcept = 0;
  // step takes n units for `key` if the limit allows, atomically. Throws BrokerUnavailable when
  // a shared store cannot be reached.
  virtual RateDecision step(const std::string& key, const GcraLimit& limit, int n) = 0;
  // pause makes `key` admit nothing for `duration` from now (a later pause wins over an earlier
  // one; a shorter one never shortens a longer pause).
  virtual void pause(const std::string& key, const GcraLimit& limit, Micros duration) = 0;
};

// make_local_rate_limit_store: TATs in this process's memory (keys idle past their TAT are
// dropped as the map grows).
std::shared_ptr<RateLimitStore> make_local_rate_limit_store();

// open_rate_limit_store opens the store for "local" or a broker URL (sqlite://, redis://,
// unix://, postgresql://, with that broker's query parameters). Stores of one URL are shared
// within the process. Throws ConfigError for a malformed URL (or a PostgreSQL schema not
// migrated to the rate limit table), BrokerUnavailable when the store cannot be reached.
std::shared_ptr<RateLimitStore> open_rate_limit_store(std::string_view url);

// AcquireOptions: how acquire waits.
struct AcquireOptions {
  // Give up (return false) when the units cannot be had within this; negative: wait for ever.
  std::chrono::milliseconds timeout{-1};
  std::stop_token stop;  // a stop request ends the wait early (acquire returns false)
  // on_wake, when set, is called at least every wake_every while waiting (the Python bindings
  // check for signals there); an exception it throws ends the wait.
  std::function<void()> on_wake;
  std::chrono::milliseconds wake_every{100};
};

class RateLimiter {
 public:
  // RateLimiter checks its arguments (a non-empty name, a valid rate and burst), throwing
  // ConfigError. Limiters of one name on one store share their limit, so give each limit its
  // own name, and the same rate and burst wherever the name is used.
  RateLimiter(std::shared_ptr<RateLimitStore> store, std::string name, Rate rate, int burst = 1);

  // try_acquire takes n units (1..burst; ConfigError otherwise) now or not at all. `key`
  // splits the limit: each key has its own bucket of this rate and burst ("" the shared one).
  RateDecision try_acquire(int n = 1, std::string_view key = {});
  // acquire waits until n units are taken and returns true, or returns false when the timeout
  // cannot be met (as soon as that is known) or a stop is requested. It sleeps exactly the wait
  // the store computed (no polling in fixed steps) and asks the store again after it.
  bool acquire(int n = 1, const AcquireOptions& options = {}, std::string_view key = {});
  // pause_for admits nothing for `duration` (an upstream's Retry-After), for every process
  // sharing the limit.
  void pause_for(std::chrono::milliseconds duration, std::string_view key = {});
  // snooze_delay: how long a job refused with `wait` should be held back before it asks again.
  // The wait alone would bring every refused job back at the same instant, where one gets the
  // unit and the rest are refused again; adding a random spread of up to one period (or the wait
  // plus a second, if less) keeps some due at every moment without a stampede per unit. Used by
  // every worker that snoozes jobs (cinejobs' own, and Celery tasks through contrib.celery); each
  // call counts one wait of this limiter (count_rate_limit_wait), as does each acquire() that
  // has to wait.
  std::chrono::milliseconds snooze_delay(Micros wait) const;

  const std::string& name() const noexcept { return name_; }
  const Rate& rate() const noexcept { return rate_; }
  int burst() const noexcept { return burst_; }
  const RateLimitStore& store() const noexcept { return *store_; }

 private:
  // store_key is the one place a limiter key is composed from the name and `key`, the same on
  // every store: <length of name>:<name>, then :<key> when `key` is not empty.
  std::string store_key(std::string_view key) const;

  std::shared_ptr<RateLimitStore> store_;
  std::string name_;
  Rate rate_;
  int burst_;
  GcraLimit limit_;
};

}  // namespace cinejobs
