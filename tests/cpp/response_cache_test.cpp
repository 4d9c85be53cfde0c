// ResponseCache: the memory cache on a simulated clock (expiry, pruning, a bounded size), and
// every store (memory, SQLite, Redis, PostgreSQL) held to one behaviour: missing keys, bodies
// kept as given, replacement, expiry, pruning, entries shared between independent connections.
#include "cinejobs/response_cache.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "broker_factories.hpp"
#include "cache/stores.hpp"
#include "cinejobs/errors.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------------------------
// The memory cache, on a simulated clock (epoch ms)

struct FakeClock {
  std::shared_ptr<std::atomic<std::int64_t>> now =
      std::make_shared<std::atomic<std::int64_t>>(1'700'000'000'000);
  detail::MemoryResponseCache::Clock clock() const {
    return [now = now] { return now->load(); };
  }
  void advance(std::chrono::milliseconds d) const { *now += d.count(); }
};

TEST(MemoryResponseCache, AnEntryExpiresExactlyAtItsTtl) {
  FakeClock t;
  detail::MemoryResponseCache cache(100, t.clock());
  cache.put("k", "{\"a\":1}", 2s);
  t.advance(1999ms);
  EXPECT_EQ(cache.get("k"), "{\"a\":1}");
  t.advance(1ms);
  EXPECT_EQ(cache.get("k"), std::nullopt) << "an expired entry is the same as a missing one";
  EXPECT_EQ(cache.size(), 0U) << "reading an expired entry drops it";
}

TEST(MemoryResponseCache, PutRenewsTheTtlAndZeroTtlRemoves) {
  FakeClock t;
  detail::MemoryResponseCache cache(100, t.clock());
  cache.put("k", "old", 1s);
  t.advance(900ms);
  cache.put("k", "new", 1s);
  t.advance(900ms);
  EXPECT_EQ(cache.get("k"), "new");
  cache.put("k", "gone", 0s);
  EXPECT_EQ(cache.get("k"), std::nullopt);
}

TEST(MemoryResponseCache, PruneCountsAndRemovesOnlyExpiredEntries) {
  FakeClock t;
  detail::MemoryResponseCache cache(100, t.clock());
  cache.put("short-1", "a", 1s);
  cache.put("short-2", "b", 1s);
  cache.put("long", "c", 1h);
  EXPECT_EQ(cache.prune(), 0U);
  t.advance(1s);
  EXPECT_EQ(cache.prune(), 2U);
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_EQ(cache.get("long"), "c");
}

TEST(MemoryResponseCache, StaysBoundedEvictingTheEntriesClosestToExpiry) {
  FakeClock t;
  detail::MemoryResponseCache cache(2000, t.clock());
  // Entries put later expire later; the earliest go first once the cache is full.
  for (int i = 0; i < 10'000; ++i) {
    cache.put(std::string("k").append(std::to_string(i)), "v", std::chrono::seconds(3600 + i));
  }
  EXPECT_LE(cache.size(), 2000U);
  EXPECT_EQ(cache.get("k9999"), "v");
  EXPECT_EQ(cache.get("k0"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Every store

struct CacheCase {
  std::string name;
  std::function<std::string(std::vector<std::shared_ptr<void>>&)> make_url;  // keeps servers up
  std::function<std::shared_ptr<ResponseCache>(const std::string&)> open_new;
};

void PrintTo(const CacheCase& c, std::ostream* os) { *os << c.name; }

std::vector<CacheCase> cache_cases() {
  std::vector<CacheCase> cases;
  cases.push_back({"memory", [](auto&) { return std::string("memory"); },
                   [](const std::string&) -> std::shared_ptr<ResponseCache> {
                     return std::make_shared<detail::MemoryResponseCache>();
                   }});
  cases.push_back({"sqlite", keep_location<SqliteStore>,
                   [](const std::string& url) { return detail::open_sqlite_response_cache(url); }});
  if (RedisServer::available() || in_ci()) {
    cases.push_back({"redis", keep_location<RedisStore>, [](const std::string& url) {
                       return detail::open_redis_response_cache(url);
                     }});
  }
  if (PostgresServer::available() || in_ci()) {
    cases.push_back({"postgres", keep_location<PostgresStore>, [](const std::string& url) {
                       return detail::open_postgres_response_cache(url);
                     }});
  }
  return cases;
}

class ResponseCaches : public ::testing::TestWithParam<CacheCase> {
 protected:
  void SetUp() override {
    url_ = GetParam().make_url(keep_);
    cache_ = GetParam().open_new(url_);
  }

  std::vector<std::shared_ptr<void>> keep_;
  std::string url_;
  std::shared_ptr<ResponseCache> cache_;
};

INSTANTIATE_TEST_SUITE_P(AllStores, ResponseCaches, ::testing::ValuesIn(cache_cases()),
                         [](const auto& info) { return info.param.name; });

TEST_P(ResponseCaches, KindNamesTheStore) { EXPECT_EQ(cache_->kind(), GetParam().name); }

TEST_P(ResponseCaches, AMissingKeyIsNullopt) {
  EXPECT_EQ(cache_->get("GET /movie/550?language=en-US"), std::nullopt);
}

TEST_P(ResponseCaches, KeepsBodiesAsGivenUnderAnyKey) {
  const std::string unicode =
      R"({"title":"Amélie","original_title":"Le Fabuleux Destin d'Amélie Poulain","ja":"千と千尋の神隠し"})";
  std::string large = "{\"overview\":\"";
  large.append(300'000, 'x').append("\"}");
  const std::string key = "GET /search/movie?language=en-US&query=caf%C3%A9%20%26%20%22quotes%22";
  cache_->put(key, unicode, 1h);
  cache_->put("GET /movie/1", large, 1h);
  cache_->put("GET /movie/2", "", 1h);
  EXPECT_EQ(cache_->get(key), unicode);
  EXPECT_EQ(cache_->get("GET /movie/1"), large);
  EXPECT_EQ(cache_->get("GET /movie/2"), "") << "an empty body is a body, not a miss";
}

TEST_P(ResponseCaches, PutReplacesTheBody) {
  cache_->put("k", "first", 1h);
  cache_->put("k", "second", 1h);
  EXPECT_EQ(cache_->get("k"), "second");
}

TEST_P(ResponseCaches, AnEntryIsGoneOnceItsTtlPassed) {
  cache_->put("short", "body", 1s);
  cache_->put("long", "body", 1h);
  EXPECT_EQ(cache_->get("short"), "body");
  const auto put_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return !cache_->get("short"); }, 5s, 20ms))
      << "the entry did not expire";
  EXPECT_GE(std::chrono::steady_clock::now() - put_at, 900ms) << "it expired too early";
  EXPECT_EQ(cache_->get("long"), "body");
}

TEST_P(ResponseCaches, AZeroTtlRemovesTheEntry) {
  cache_->put("k", "body", 1h);
  cache_->put("k", "body", 0s);
  EXPECT_EQ(cache_->get("k"), std::nullopt);
}

TEST_P(ResponseCaches, PruneRemovesOnlyExpiredEntries) {
  cache_->put("short", "a", 1s);
  cache_->put("long", "b", 1h);
  ASSERT_TRUE(wait_until([&] { return !cache_->get("short"); }, 5s, 20ms));
  // Memory drops an expired entry when it is read; Redis expires its own keys.
  const std::size_t expected = GetParam().name == "sqlite" || GetParam().name == "postgres";
  EXPECT_EQ(cache_->prune(), expected);
  EXPECT_EQ(cache_->prune(), 0U);
  EXPECT_EQ(cache_->get("long"), "b");
}

TEST_P(ResponseCaches, IndependentConnectionsShareEntries) {
  if (GetParam().name == "memory") GTEST_SKIP() << "a memory cache is one process's memory";
  const auto other = GetParam().open_new(url_);
  cache_->put("shared", "{\"id\":550}", 1h);
  EXPECT_EQ(other->get("shared"), "{\"id\":550}");
  other->put("shared", "{\"id\":551}", 1h);
  EXPECT_EQ(cache_->get("shared"), "{\"id\":551}");
}

TEST_P(ResponseCaches, ThreadsShareOneCache) {
  std::atomic<int> mismatches{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          const std::string key =
              std::string("t").append(std::to_string(t)).append("-").append(std::to_string(i));
          cache_->put(key, key, 1h);
          if (cache_->get(key) != key) ++mismatches;
        }
      });
    }
  }
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(cache_->get("t3-24"), "t3-24");
}

TEST(ResponseCacheUrls, OpenChoosesByUrlAndSharesOneCachePerUrl) {
  const auto memory = open_response_cache("memory");
  EXPECT_EQ(memory->kind(), "memory");
  EXPECT_EQ(open_response_cache("memory"), memory);
  memory->put("k", "v", 1h);
  EXPECT_EQ(open_response_cache("memory")->get("k"), "v");
  TempDir dir;
  EXPECT_EQ(open_response_cache(sqlite_url(dir.path()))->kind(), "sqlite");
  EXPECT_THROW(open_response_cache("memcached://x"), ConfigError);
  EXPECT_THROW(open_response_cache("sqlite://relative.db"), ConfigError);
}

TEST(ResponseCacheUrls, PostgresRefusesASchemaWithoutTheVersion4Table) {
  if (!PostgresServer::available() && !in_ci()) GTEST_SKIP() << "PostgreSQL is not installed";
  PostgresServer& server = PostgresServer::instance();
  const std::string schema = random_schema();
  server.sql("CREATE SCHEMA " + schema);
  try {
    open_response_cache(server.url() + "?schema=" + schema);
    ADD_FAILURE() << "an unmigrated schema was accepted";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("response_cache"), std::string::npos) << message;
    EXPECT_NE(message.find("version 4"), std::string::npos) << message;
    EXPECT_NE(message.find("cinejobs migrate"), std::string::npos) << message;
  }
  server.sql("DROP SCHEMA " + schema + " CASCADE");
}

}  // namespace
