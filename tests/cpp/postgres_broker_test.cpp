// PostgreSQL-specific behaviour the conformance suite cannot express: URLs and their pass-through
// to libpq, the errors a user meets first (wrong password, missing database, server down, schema
// not migrated or newer), migrations (idempotent, safe to run concurrently), LISTEN/NOTIFY
// wake-ups across broker instances, reconnecting after a server restart, and the statement
// Python runs for a transactional enqueue. Every test uses the real server of postgres_server.hpp.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "broker_factories.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/migrate.hpp"
#include "cinejobs/postgres.hpp"
#include "postgres_server.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

// Every migration this cinejobs knows, in the order migrate applies them.
const std::vector<int> kAllMigrations = {1, 2, 3, 4};

class PostgresBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PostgresServer::available() && !in_ci()) {
      GTEST_SKIP() << "PostgreSQL is not installed (and CI is not set)";
    }
    server_ = &PostgresServer::instance();
  }

  PostgresServer& server() { return *server_; }

  // A role that must log in with its password (the server trusts only the superuser).
  void ensure_password_role() {
    server().sql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cj_pw') THEN "
        "CREATE ROLE cj_pw LOGIN PASSWORD 'right-secret'; END IF; END $$; "
        "GRANT CREATE ON DATABASE postgres TO cj_pw");
  }

  template <class E>
  static std::string message_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const E& e) {
      return e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw the wrong error type: " << e.what();
      return {};
    }
    ADD_FAILURE() << "did not throw";
    return {};
  }

  PostgresServer* server_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// URLs

TEST_F(PostgresBrokerTest, OpensBothSchemesAndKeepsTheUrl) {
  PostgresStore store;
  const std::string url = store.url();
  auto broker = open_broker(url);
  EXPECT_EQ(broker->kind(), "postgres");
  EXPECT_EQ(broker->url(), url);
  EXPECT_TRUE(broker->enqueue(make_job()).created);

  std::string short_scheme = url;
  short_scheme.replace(0, std::string("postgresql").size(), "postgres");
  auto other = open_broker(short_scheme);
  EXPECT_EQ(other->list({}).size(), 1u);
}

TEST_F(PostgresBrokerTest, LibpqParametersPassThroughAndCinejobsParametersAreRemoved) {
  PostgresStore store;
  const std::string app = random_schema("app_");
  // application_name and connect_timeout are libpq's; schema, max_payload_bytes and
  // result_ttl_s are cinejobs' and must not reach libpq (which refuses unknown parameters).
  auto broker = open_broker(store.url() + "&application_name=" + app +
                            "&connect_timeout=5&sslmode=disable&max_payload_bytes=64"
                            "&result_ttl_s=3600");
  Job big = make_job();
  big.args = cat({"[", json_quote(std::string(100, 'x')), "]"});
  EXPECT_THROW(broker->enqueue(big), InvalidPayload) << "max_payload_bytes was not applied";
  EXPECT_TRUE(broker->enqueue(make_job()).created);
  EXPECT_NE(server().query("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" +
                           app + "'"),
            "0")
      << "application_name did not reach the server";
  // Without the URL naming one, connections say they are cinejobs'.
  auto plain = store.open();
  EXPECT_EQ(plain->list({}).size(), 1u);
  EXPECT_NE(
      server().query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cinejobs'"),
      "0");
}

TEST_F(PostgresBrokerTest, UnknownLibpqParameterAndBadSchemaAreConfigErrors) {
  PostgresStore store;
  const std::string unknown =
      message_of<ConfigError>([&] { open_broker(store.url() + "&nosuch=1"); });
  EXPECT_NE(unknown.find("nosuch"), std::string::npos) << unknown;
  for (const char* schema : {"bad-name", "1abc", "a%22b", ""}) {
    SCOPED_TRACE(schema);
    EXPECT_THROW(open_broker(server().url() + "?schema=" + schema), ConfigError);
  }
  EXPECT_THROW(open_broker(store.url() + "&migrate=perhaps"), ConfigError);
  EXPECT_THROW(open_broker(store.url() + "&result_ttl_s=-1"), ConfigError);
}

TEST_F(PostgresBrokerTest, SslModeRequirePassesThroughToLibpq) {
  PostgresStore store;
  // The test server has no TLS: libpq itself must refuse, which proves sslmode reached it.
  const std::string message =
      message_of<BrokerUnavailable>([&] { open_broker(store.url() + "&sslmode=require"); });
  EXPECT_NE(message.find("SSL"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// The errors a user meets first

TEST_F(PostgresBrokerTest, WrongPasswordIsBrokerUnavailableSayingToCheckIt) {
  ensure_password_role();
  const std::string url = server().url("cj_pw", "wrong-secret") + "?schema=cinejobs";
  const std::string message = message_of<BrokerUnavailable>([&] { open_broker(url); });
  EXPECT_NE(message.find("password"), std::string::npos) << message;
  EXPECT_NE(message.find("cj_pw"), std::string::npos) << message;
  EXPECT_NE(message.find("check the user name and password"), std::string::npos) << message;
  EXPECT_EQ(message.find("wrong-secret"), std::string::npos) << "the password leaked: " << message;
  EXPECT_THROW(migrate_broker(url), BrokerUnavailable);

  // The right password gets as far as the schema check.
  const std::string right = server().url("cj_pw", "right-secret") + "?schema=" + random_schema();
  EXPECT_THROW(open_broker(right), ConfigError);
}

TEST_F(PostgresBrokerTest, MissingDatabaseIsBrokerUnavailableSayingToCreateIt) {
  const std::string url = server().url("postgres", "", "no_such_db");
  const std::string message = message_of<BrokerUnavailable>([&] { open_broker(url); });
  EXPECT_NE(message.find("no_such_db"), std::string::npos) << message;
  EXPECT_NE(message.find("createdb"), std::string::npos) << message;
}

TEST_F(PostgresBrokerTest, ServerDownIsBrokerUnavailableAskingWhetherItRuns) {
  // A port nobody listens on.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  const std::string url =
      "postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/postgres?connect_timeout=5";
  const std::string message = message_of<BrokerUnavailable>([&] { open_broker(url); });
  EXPECT_NE(message.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << message;
  EXPECT_NE(message.find("is the server running"), std::string::npos) << message;
}

TEST_F(PostgresBrokerTest, UnmigratedSchemaIsAConfigErrorSayingToRunMigrate) {
  ensure_password_role();
  const std::string schema = random_schema();
  const std::string url = server().url("cj_pw", "right-secret") + "?schema=" + schema;
  const std::string message = message_of<ConfigError>([&] { open_broker(url); });
  EXPECT_NE(message.find("is not migrated (found version 0, need " +
                         std::to_string(kAllMigrations.back()) + ")"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("cinejobs migrate --broker postgresql://cj_pw:***@"), std::string::npos)
      << message;
  EXPECT_EQ(message.find("right-secret"), std::string::npos) << "the password leaked: " << message;
  EXPECT_EQ(server().query("SELECT count(*) FROM pg_namespace WHERE nspname = '" + schema + "'"),
            "0")
      << "opening a broker created the schema";

  // migrate=true in the URL migrates on open (tests, demos).
  auto broker = open_broker(url + "&migrate=true");
  EXPECT_TRUE(broker->enqueue(make_job()).created);
  EXPECT_NO_THROW(open_broker(url));
  server().sql("DROP SCHEMA \"" + schema + "\" CASCADE");
}

TEST_F(PostgresBrokerTest, NewerSchemaIsRefusedByOpenAndByMigrate) {
  PostgresStore store;
  server().sql("INSERT INTO \"" + store.schema() +
               "\".schema_version (version, name) VALUES (999, 'from the future')");
  const std::string message = message_of<ConfigError>([&] { open_broker(store.url()); });
  EXPECT_NE(message.find("999"), std::string::npos) << message;
  EXPECT_NE(message.find("newer"), std::string::npos) << message;
  EXPECT_NE(message.find("upgrade cinejobs"), std::string::npos) << message;
  EXPECT_THROW(migrate_broker(store.url()), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Migrations

TEST_F(PostgresBrokerTest, MigrateIsIdempotent) {
  std::string versions_text;
  for (int v : kAllMigrations) {
    if (!versions_text.empty()) versions_text += ',';
    versions_text += std::to_string(v);
  }
  const std::string schema = random_schema();
  const std::string url = server().url() + "?schema=" + schema;
  EXPECT_EQ(migrate_broker(url), kAllMigrations);
  EXPECT_EQ(migrate_broker(url), std::vector<int>{});
  EXPECT_EQ(migrate_broker(url), std::vector<int>{});
  EXPECT_EQ(server().query("SELECT string_agg(version::text, ',' ORDER BY version) FROM \"" +
                           schema + "\".schema_version"),
            versions_text);
  auto broker = open_broker(url);
  EXPECT_TRUE(broker->enqueue(make_job()).created);
  server().sql("DROP SCHEMA \"" + schema + "\" CASCADE");
}

TEST_F(PostgresBrokerTest, ConcurrentMigratorsApplyEachMigrationOnce) {
  for (int round = 0; round < 3; ++round) {
    const std::string schema = random_schema();
    const std::string url = server().url() + "?schema=" + schema;
    constexpr int kMigrators = 4;
    std::vector<std::vector<int>> applied(kMigrators);
    std::vector<std::string> errors(kMigrators);
    std::atomic<int> ready{0};
    {
      std::vector<std::jthread> threads;
      for (int i = 0; i < kMigrators; ++i) {
        threads.emplace_back([&, i] {
          ++ready;
          while (ready.load() < kMigrators) std::this_thread::yield();
          try {
            applied[static_cast<std::size_t>(i)] = migrate_broker(url);
          } catch (const std::exception& e) {
            errors[static_cast<std::size_t>(i)] = e.what();
          }
        });
      }
    }
    int applied_once = 0;
    for (int i = 0; i < kMigrators; ++i) {
      EXPECT_EQ(errors[static_cast<std::size_t>(i)], "");
      // The first migrator applies every migration; the others find nothing to do.
      if (applied[static_cast<std::size_t>(i)] == kAllMigrations) {
        ++applied_once;
      } else {
        EXPECT_TRUE(applied[static_cast<std::size_t>(i)].empty());
      }
    }
    EXPECT_EQ(applied_once, 1);
    EXPECT_NO_THROW(open_broker(url));
    server().sql("DROP SCHEMA \"" + schema + "\" CASCADE");
  }
}

// ---------------------------------------------------------------------------------------------
// LISTEN/NOTIFY

TEST_F(PostgresBrokerTest, IdleWaiterWakesWithinMillisecondsOfAnEnqueueFromAnotherInstance) {
  PostgresStore store;
  auto waiter_broker = store.open();
  auto producer = store.open();
  const std::vector<std::string> queues = {"listen"};
  // The first wait starts the LISTEN connection (and returns once it listens, or times out).
  waiter_broker->wait_for_jobs(queues, 2s, std::stop_token{});

  using Clock = std::chrono::steady_clock;
  std::atomic<bool> started{false};
  std::atomic<bool> returned{false};
  std::atomic<Clock::rep> returned_at{0};
  std::stop_source cleanup;
  std::jthread waiter([&] {
    started = true;
    waiter_broker->wait_for_jobs(queues, 30s, cleanup.get_token());
    returned_at = Clock::now().time_since_epoch().count();
    returned = true;
  });
  ASSERT_TRUE(wait_until([&] { return started.load(); }, 5s));
  // The waiter may not be blocked yet when the first job lands; keep enqueueing every 50 ms and
  // measure from the first enqueue made after it started, so a miss costs at most one step.
  Clock::time_point first_enqueue{};
  const bool woke = wait_until(
      [&] {
        if (returned) return true;
        producer->enqueue(make_job("t", "listen"));
        if (first_enqueue == Clock::time_point{}) first_enqueue = Clock::now();
        return returned.load();
      },
      5s, 50ms);
  cleanup.request_stop();
  waiter.join();
  ASSERT_TRUE(woke) << "the waiter never woke on another instance's enqueue";
  const auto latency = Clock::time_point(Clock::duration(returned_at.load())) - first_enqueue;
  EXPECT_LT(latency, 200ms)
      << "woke " << std::chrono::duration_cast<std::chrono::milliseconds>(latency).count()
      << " ms after the enqueue";
}

TEST_F(PostgresBrokerTest, WaiterIgnoresEnqueuesIntoOtherQueuesUntilMaxWait) {
  PostgresStore store;
  auto waiter_broker = store.open();
  auto producer = store.open();
  const std::vector<std::string> queues = {"mine"};
  waiter_broker->wait_for_jobs(queues, 2s, std::stop_token{});
  producer->enqueue(make_job("t", "theirs"));
  const auto t0 = std::chrono::steady_clock::now();
  waiter_broker->wait_for_jobs(queues, 300ms, std::stop_token{});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

// ---------------------------------------------------------------------------------------------
// Faults: server restart

TEST_F(PostgresBrokerTest, ReconnectsAfterTheServerRestartsBetweenCalls) {
  PostgresStore store;
  auto broker = store.open();
  auto producer = store.open();
  const std::string before = broker->enqueue(make_job("t", "r")).id;
  const std::vector<std::string> queues = {"r"};
  broker->wait_for_jobs(queues, 1s, std::stop_token{});  // the LISTEN connection is up

  server().stop();
  EXPECT_THROW(broker->enqueue(make_job("t", "r")), BrokerUnavailable);
  EXPECT_THROW(broker->get(before), BrokerUnavailable);
  // Waiting during the outage neither throws nor hangs past max_wait.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NO_THROW(broker->wait_for_jobs(queues, 200ms, std::stop_token{}));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  server().start();

  // The pooled connections died with the server; the next call reconnects on its own.
  const std::string after = broker->enqueue(make_job("t", "r")).id;
  EXPECT_EQ(state_of(*broker, before), JobState::kQueued);
  EXPECT_EQ(state_of(*producer, after), JobState::kQueued) << "the producer did not reconnect";
  ReserveParams params;
  params.queues = {"r"};
  params.max_jobs = 10;
  EXPECT_EQ(broker->reserve(params).size(), 2u);

  // And the LISTEN connection comes back: another instance's enqueue wakes the waiter again.
  std::atomic<bool> returned{false};
  std::stop_source cleanup;
  std::jthread waiter([&] {
    while (!returned && !cleanup.stop_requested()) {
      broker->wait_for_jobs(queues, 30s, cleanup.get_token());
      returned = true;
    }
  });
  const bool woke = wait_until(
      [&] {
        producer->enqueue(make_job("t", "r"));
        return returned.load();
      },
      10s, 50ms);
  cleanup.request_stop();
  EXPECT_TRUE(woke);
}

// ---------------------------------------------------------------------------------------------
// Transactional enqueue: the statement Python runs on the caller's connection

// inline_params substitutes each %s with a SQL literal, as psycopg's client-side binding would,
// so psql can run the statement.
std::string inline_params(const SqlStatement& st) {
  std::string out;
  std::size_t next = 0;
  for (std::size_t i = 0; i < st.sql.size(); ++i) {
    if (st.sql.compare(i, 2, "%s") != 0) {
      out.push_back(st.sql[i]);
      continue;
    }
    const SqlParam& p = st.params.at(next++);
    if (std::holds_alternative<std::monostate>(p)) {
      out += "NULL";
    } else if (const auto* n = std::get_if<std::int64_t>(&p)) {
      out += std::to_string(*n);
    } else {
      out += "'";
      for (const char c : std::get<std::string>(p)) {
        if (c == '\'') out.push_back('\'');
        out.push_back(c);
      }
      out += "'";
    }
    ++i;
  }
  EXPECT_EQ(next, st.params.size()) << "placeholders and parameters differ in number";
  return out;
}

TEST_F(PostgresBrokerTest, EnqueueStatementStoresTheJobOnlyWhenTheCallersTransactionCommits) {
  PostgresStore store;
  auto broker = store.open();
  Job job = make_job("mail.send", "mail");
  job.args = R"(["it's", {"to": "a@b.c"}])";
  job.unique_key = "mail:1";
  job.priority = 3;

  const SqlStatement rolled_back = postgres_enqueue_statement(store.schema(), job);
  EXPECT_EQ(rolled_back.sql.find('$'), std::string::npos) << "psycopg takes %s placeholders";
  ASSERT_EQ(std::get<std::string>(rolled_back.params.at(1)), "mail.send");
  const std::string rolled_back_id = std::get<std::string>(rolled_back.params.at(0));
  server().sql("BEGIN; " + inline_params(rolled_back) + "; ROLLBACK;");
  EXPECT_FALSE(broker->get(rolled_back_id).has_value()) << "a rolled back enqueue left a job";

  const SqlStatement committed = postgres_enqueue_statement(store.schema(), job);
  const std::string row = server().query(inline_params(committed));
  const std::string id = std::get<std::string>(committed.params.at(0));
  EXPECT_EQ(row, id + "|t");
  const Job stored = get_job(*broker, id);
  EXPECT_EQ(stored.args, job.args);
  EXPECT_EQ(stored.priority, 3);
  EXPECT_EQ(stored.state, JobState::kQueued);

  // The unique key is honoured: the second statement answers with the holder.
  const SqlStatement duplicate = postgres_enqueue_statement(store.schema(), job);
  EXPECT_EQ(server().query(inline_params(duplicate)), id + "|f");
  EXPECT_EQ(broker->list({}).size(), 1u);
}

TEST_F(PostgresBrokerTest, EnqueueStatementValidatesLikeEnqueue) {
  Job bad = make_job();
  bad.args = "{}";
  EXPECT_THROW(postgres_enqueue_statement("cinejobs", bad), InvalidPayload);
  bad = make_job();
  bad.max_attempts = 0;
  EXPECT_THROW(postgres_enqueue_statement("cinejobs", bad), InvalidPayload);
  EXPECT_THROW(postgres_enqueue_statement("bad name", make_job()), ConfigError);
  const SqlStatement ok = postgres_enqueue_statement("cinejobs", make_job());
  EXPECT_NE(ok.sql.find("\"cinejobs\".jobs"), std::string::npos);
  EXPECT_EQ(ok.sql.find('%', ok.sql.rfind("%s") + 2), std::string::npos);
}

}  // namespace
