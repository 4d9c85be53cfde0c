// RateLimiter: the rate parser, the GCRA maths on a simulated clock, and every store (local,
// SQLite, Redis, PostgreSQL) held to one behaviour: bursts, refusals with the right wait,
// separate keys, a limit shared between independent connections, pauses, and acquire.
#include "cinejobs/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "broker_factories.hpp"
#include "cinejobs/errors.hpp"
#include "rate_limit/stores.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------------------------
// Rates

TEST(ParseRate, ReadsCountAndPeriodWithOptionalMultiplier) {
  EXPECT_EQ(parse_rate("20/s"), (Rate{20, 1s}));
  EXPECT_EQ(parse_rate("40/10s"), (Rate{40, 10s}));
  EXPECT_EQ(parse_rate("100/m"), (Rate{100, 1min}));
  EXPECT_EQ(parse_rate("5/h"), (Rate{5, 1h}));
  EXPECT_EQ(parse_rate("1000/d"), (Rate{1000, 24h}));
  EXPECT_EQ(parse_rate("3/500ms"), (Rate{3, 500ms}));
}

TEST(ParseRate, WritesBackWhatItReads) {
  for (const char* text : {"20/s", "40/10s", "100/m", "5/h", "1000/d", "3/500ms", "7/90s"}) {
    EXPECT_EQ(to_string(parse_rate(text)), text);
  }
  EXPECT_EQ(to_string(Rate{1, 60s}), "1/m");
}

TEST(ParseRate, RefusesBadTextNamingIt) {
  for (const char* text : {"", "20", "20/", "/s", "0/s", "-1/s", "1.5/s", "20/x", "20/0s", "20/10",
                           "20/sec", "a/s", "20/s ", "20/1.5s"}) {
    try {
      parse_rate(text);
      ADD_FAILURE() << "parse_rate accepted '" << text << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + std::string(text) + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(GcraLimit, RefusesABurstBelowOneAndRatesFinerThanAMicrosecond) {
  EXPECT_THROW(gcra_limit(Rate{20, 1s}, 0), ConfigError);
  EXPECT_THROW(gcra_limit(Rate{2'000'000, 1s}, 1), ConfigError);
  const GcraLimit limit = gcra_limit(Rate{20, 1s}, 5);
  EXPECT_EQ(limit.interval, 50ms);
  EXPECT_EQ(limit.capacity, 250ms);
}

// ---------------------------------------------------------------------------------------------
// GCRA maths, on a simulated clock (microseconds)

constexpr std::int64_t kMs = 1000;

TEST(Gcra, AdmitsABurstAtOnceThenOneUnitPerInterval) {
  const GcraLimit limit = gcra_limit(Rate{20, 1s}, 5);
  const std::int64_t t0 = 1'000'000'000;
  std::int64_t tat = 0;
  for (int i = 0; i < 5; ++i) {
    const GcraStep s = gcra_step(tat, t0, limit, 1);
    ASSERT_TRUE(s.decision.allowed) << "unit " << i << " of the burst";
    tat = s.new_tat;
  }
  const GcraStep refused = gcra_step(tat, t0, limit, 1);
  EXPECT_FALSE(refused.decision.allowed);
  EXPECT_EQ(refused.decision.wait, 50ms);
  EXPECT_EQ(refused.new_tat, tat) << "a refusal must not move the TAT";
  EXPECT_FALSE(gcra_step(tat, t0 + 49 * kMs, limit, 1).decision.allowed);
  EXPECT_TRUE(gcra_step(tat, t0 + 50 * kMs, limit, 1).decision.allowed);
}

TEST(Gcra, TakesSeveralUnitsAtOnceAndWaitsForAllOfThem) {
  const GcraLimit limit = gcra_limit(Rate{10, 1s}, 4);
  const std::int64_t t0 = 5'000'000;
  const GcraStep three = gcra_step(0, t0, limit, 3);
  ASSERT_TRUE(three.decision.allowed);
  const GcraStep two = gcra_step(three.new_tat, t0, limit, 2);
  EXPECT_FALSE(two.decision.allowed);
  EXPECT_EQ(two.decision.wait, 100ms) << "one unit left of four; the second comes one interval on";
  EXPECT_TRUE(gcra_step(three.new_tat, t0, limit, 1).decision.allowed);
}

TEST(Gcra, IdleTimeRefillsTheBucketButNeverBeyondTheBurst) {
  const GcraLimit limit = gcra_limit(Rate{1, 1s}, 2);
  const std::int64_t t0 = 7'000'000;
  std::int64_t tat = gcra_step(0, t0, limit, 2).new_tat;
  const std::int64_t later = t0 + 3600 * 1'000'000LL;
  const GcraStep burst = gcra_step(tat, later, limit, 2);
  ASSERT_TRUE(burst.decision.allowed);
  EXPECT_FALSE(gcra_step(burst.new_tat, later, limit, 1).decision.allowed);
}

TEST(Gcra, PauseAdmitsNothingUntilItEndsThenOneUnitPerInterval) {
  const GcraLimit limit = gcra_limit(Rate{20, 1s}, 5);
  const std::int64_t t0 = 9'000'000;
  const std::int64_t tat = gcra_pause_tat(0, t0, limit, 2s);
  const GcraStep during = gcra_step(tat, t0 + 1999 * kMs, limit, 1);
  EXPECT_FALSE(during.decision.allowed);
  EXPECT_EQ(during.decision.wait, 1ms);
  const GcraStep after = gcra_step(tat, t0 + 2000 * kMs, limit, 1);
  ASSERT_TRUE(after.decision.allowed);
  EXPECT_FALSE(gcra_step(after.new_tat, t0 + 2000 * kMs, limit, 1).decision.allowed)
      << "no burst right after a pause";
  EXPECT_EQ(gcra_pause_tat(tat, t0, limit, 1s), tat) << "a shorter pause never shortens one";
}

// Over random arrival times, no half-open window of one period admits more than
// count + burst - 1, and demand that always exceeds the rate gets all of it.
TEST(Gcra, NoWindowOfThePeriodAdmitsMoreThanRatePlusBurst) {
  const Rate rate{20, 1s};
  const int burst = 5;
  const GcraLimit limit = gcra_limit(rate, burst);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> gap(0, 20 * kMs);
  std::vector<std::int64_t> admitted;
  std::int64_t tat = 0;
  const std::int64_t t0 = 1'000'000'000;
  for (std::int64_t now = t0; now < t0 + 30'000 * kMs; now += gap(rng)) {
    const GcraStep s = gcra_step(tat, now, limit, 1);
    if (s.decision.allowed) {
      tat = s.new_tat;
      admitted.push_back(now);
    }
  }
  std::size_t most = 0;
  for (std::size_t i = 0, j = 0; i < admitted.size(); ++i) {
    while (j < admitted.size() && admitted[j] < admitted[i] + 1'000'000) ++j;
    most = std::max(most, j - i);
  }
  EXPECT_LE(most, static_cast<std::size_t>(rate.count + burst - 1));
  EXPECT_GE(admitted.size(), static_cast<std::size_t>(0.95 * (20 * 30 + burst)));
}

// ---------------------------------------------------------------------------------------------
// Stores

AcquireOptions within(std::chrono::milliseconds timeout) {
  AcquireOptions options;
  options.timeout = timeout;
  return options;
}

// A fresh store location and a way to open independent stores onto it (new connections).
struct StoreCase {
  std::string name;
  std::function<std::string(std::vector<std::shared_ptr<void>>&)> make_url;  // keeps servers up
  std::function<std::shared_ptr<RateLimitStore>(const std::string&)> open_new;
};

void PrintTo(const StoreCase& c, std::ostream* os) { *os << c.name; }

std::vector<StoreCase> store_cases() {
  std::vector<StoreCase> cases;
  cases.push_back({"local", [](auto&) { return std::string("local"); },
                   [](const std::string&) { return make_local_rate_limit_store(); }});
  cases.push_back({"sqlite", keep_location<SqliteStore>, [](const std::string& url) {
                     return detail::open_sqlite_rate_limit_store(url);
                   }});
  if (RedisServer::available() || in_ci()) {
    cases.push_back({"redis", keep_location<RedisStore>, [](const std::string& url) {
                       return detail::open_redis_rate_limit_store(url);
                     }});
  }
  if (PostgresServer::available() || in_ci()) {
    cases.push_back({"postgres", keep_location<PostgresStore>, [](const std::string& url) {
                       return detail::open_postgres_rate_limit_store(url);
                     }});
  }
  return cases;
}

class RateLimitStores : public ::testing::TestWithParam<StoreCase> {
 protected:
  void SetUp() override {
    url_ = GetParam().make_url(keep_);
    store_ = GetParam().open_new(url_);
  }

  RateLimiter limiter(const std::string& name, const char* rate, int burst,
                      std::shared_ptr<RateLimitStore> store = nullptr) {
    return RateLimiter(store ? store : store_, name, parse_rate(rate), burst);
  }

  std::vector<std::shared_ptr<void>> keep_;
  std::string url_;
  std::shared_ptr<RateLimitStore> store_;
};

INSTANTIATE_TEST_SUITE_P(AllStores, RateLimitStores, ::testing::ValuesIn(store_cases()),
                         [](const auto& info) { return info.param.name; });

TEST_P(RateLimitStores, KindNamesTheStore) { EXPECT_EQ(store_->kind(), GetParam().name); }

TEST_P(RateLimitStores, AdmitsTheBurstThenRefusesWithTheWaitForTheNextUnit) {
  // 1/min: the next unit is a minute away, far beyond any delay of a slow machine.
  RateLimiter l = limiter("burst", "1/m", 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(l.try_acquire().allowed) << "unit " << i;
  const RateDecision refused = l.try_acquire();
  EXPECT_FALSE(refused.allowed);
  EXPECT_GT(refused.wait, 50s);
  EXPECT_LE(refused.wait, 60s);
  EXPECT_THROW(l.try_acquire(4), ConfigError) << "more than the burst can never be admitted";
  EXPECT_THROW(l.try_acquire(0), ConfigError);
}

TEST_P(RateLimitStores, KeysAndNamesHaveSeparateBuckets) {
  RateLimiter a = limiter("a", "1/m", 1);
  RateLimiter b = limiter("b", "1/m", 1);
  EXPECT_TRUE(a.try_acquire().allowed);
  EXPECT_FALSE(a.try_acquire().allowed);
  EXPECT_TRUE(b.try_acquire().allowed);
  EXPECT_TRUE(a.try_acquire(1, "user-1").allowed);
  EXPECT_TRUE(a.try_acquire(1, "user-2").allowed);
  EXPECT_FALSE(a.try_acquire(1, "user-1").allowed);
}

TEST_P(RateLimitStores, NamesAndKeysThatJoinToTheSameTextHaveSeparateBuckets) {
  // Joined with ':' these three are all "task:a:b"; each must still have its own bucket.
  RateLimiter name_and_key = limiter("task:a", "1/m", 1);
  RateLimiter name_only = limiter("task:a:b", "1/m", 1);
  RateLimiter shorter_name = limiter("task", "1/m", 1);
  EXPECT_TRUE(name_and_key.try_acquire(1, "b").allowed);
  EXPECT_TRUE(name_only.try_acquire().allowed) << "task:a:b shares task:a + b's bucket";
  EXPECT_FALSE(name_only.try_acquire(1, "").allowed);
  EXPECT_TRUE(shorter_name.try_acquire(1, "a:b").allowed) << "task + a:b shares a bucket";
  EXPECT_FALSE(name_and_key.try_acquire(1, "b").allowed);
  EXPECT_FALSE(shorter_name.try_acquire(1, "a:b").allowed);
  // The name alone and the name with a key are two buckets too.
  EXPECT_TRUE(name_and_key.try_acquire().allowed);
}

TEST_P(RateLimitStores, IndependentConnectionsShareOneLimit) {
  if (GetParam().name == "local") GTEST_SKIP() << "a local store is one process's memory";
  RateLimiter here = limiter("shared", "1/m", 2);
  RateLimiter there = limiter("shared", "1/m", 2, GetParam().open_new(url_));
  EXPECT_TRUE(here.try_acquire().allowed);
  EXPECT_TRUE(there.try_acquire().allowed);
  EXPECT_FALSE(here.try_acquire().allowed);
  EXPECT_FALSE(there.try_acquire().allowed);
}

TEST_P(RateLimitStores, PauseForHoldsEveryUserBackUntilItEnds) {
  RateLimiter l = limiter("paused", "100/s", 5);
  l.pause_for(1500ms);
  const RateDecision during = l.try_acquire();
  EXPECT_FALSE(during.allowed);
  EXPECT_GT(during.wait, 1s);
  EXPECT_LE(during.wait, 1500ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(l.acquire(1, within(10s)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1s) << "acquire returned before the pause";
}

TEST_P(RateLimitStores, AcquireGivesUpAtOnceWhenTheTimeoutCannotBeMet) {
  RateLimiter l = limiter("timeout", "1/h", 1);
  ASSERT_TRUE(l.try_acquire().allowed);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(l.acquire(1, within(30s)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s) << "it must not wait out a lost cause";
}

TEST_P(RateLimitStores, AcquireEndsWhenStopIsRequested) {
  RateLimiter l = limiter("stop", "1/h", 1);
  ASSERT_TRUE(l.try_acquire().allowed);
  std::stop_source stop;
  std::jthread stopper([&] {
    std::this_thread::sleep_for(100ms);
    stop.request_stop();
  });
  AcquireOptions options;
  options.stop = stop.get_token();
  EXPECT_FALSE(l.acquire(1, options));
}

// CountingStore counts the steps asked of the store it wraps.
class CountingStore final : public RateLimitStore {
 public:
  explicit CountingStore(std::shared_ptr<RateLimitStore> inner) : inner_(std::move(inner)) {}
  std::string_view kind() const noexcept override { return inner_->kind(); }
  RateDecision step(const std::string& key, const GcraLimit& limit, int n) override {
    ++steps;
    return inner_->step(key, limit, n);
  }
  void pause(const std::string& key, const GcraLimit& limit, Micros duration) override {
    inner_->pause(key, limit, duration);
  }
  std::atomic<int> steps{0};

 private:
  std::shared_ptr<RateLimitStore> inner_;
};

// Threads hammering acquire admit no more than burst + rate * elapsed, and the wake-ups come
// from the computed waits: each waiter asks the store again only when a unit may be free (about
// once per unit handed out while it waits), not every few milliseconds.
TEST_P(RateLimitStores, ConcurrentAcquiresNeverExceedTheLimit) {
  auto counting = std::make_shared<CountingStore>(store_);
  RateLimiter l = limiter("threads", "40/s", 4, counting);
  std::atomic<int> admitted{0};
  const auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 6; ++i) {
          if (l.acquire(1, within(30s))) ++admitted;
        }
      });
    }
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(admitted.load(), 36) << "every acquire with a generous timeout gets its unit";
  EXPECT_LE(admitted.load(), 4 + static_cast<int>(40 * elapsed) + 1)
      << "admitted more than burst + rate * elapsed (" << elapsed << " s)";
  EXPECT_GE(elapsed, (36.0 - 4.0) / 40.0 - 0.05) << "36 units at 40/s with burst 4 take 0.8 s";
  // Six threads woken for each unit: at most about 6 steps per unit; polling every millisecond
  // for 0.8 s would be thousands.
  EXPECT_LE(counting->steps.load(), 36 * 8);
}

TEST(RateLimitStoreUrls, OpenChoosesByUrlAndSharesOneStorePerUrl) {
  EXPECT_EQ(open_rate_limit_store("local")->kind(), "local");
  EXPECT_EQ(open_rate_limit_store("local"), open_rate_limit_store("local"));
  TempDir dir;
  EXPECT_EQ(open_rate_limit_store(sqlite_url(dir.path()))->kind(), "sqlite");
  EXPECT_THROW(open_rate_limit_store("memcached://x"), ConfigError);
  EXPECT_THROW(open_rate_limit_store("sqlite://relative.db"), ConfigError);
  EXPECT_THROW(RateLimiter(make_local_rate_limit_store(), "", Rate{}, 1), ConfigError);
}

}  // namespace
