// Redis-specific tests, beyond the conformance suite: URL parsing, errors when the server is
// unreachable or refuses the credentials, the blocking wake-up of idle workers, job events for
// handles, recovery from SCRIPT FLUSH and from a restart of redis-server, isolation of key
// prefixes, and a Worker running on Redis. Every test uses a real redis-server started for it
// (or the process's shared one, with a fresh key prefix).
#include "brokers/redis/redis_broker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/worker.hpp"
#include "redis_server.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// Every test here needs redis-server: outside CI a machine without it skips them.
class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisServer::available() && !in_ci()) GTEST_SKIP() << "redis-server is not installed";
  }
  static std::string shared_url(const std::string& prefix = random_prefix()) {
    return RedisServer::shared().url(prefix);
  }
  static std::vector<Job> reserve(Broker& broker, const std::string& queue, std::size_t n = 1) {
    ReserveParams params;
    params.queues = {queue};
    params.max_jobs = n;
    return broker.reserve(params);
  }
};

detail::RedisConfig parse(const std::string& url) {
  BrokerOptions options;
  return detail::parse_redis_url(url, options);
}

// ---------------------------------------------------------------------------------------------
// URL parsing

TEST(RedisUrl, ReadsHostPortAndDatabaseWithDefaults) {
  const auto full = parse("redis://10.1.2.3:6380/7");
  EXPECT_EQ(full.endpoint.host, "10.1.2.3");
  EXPECT_EQ(full.endpoint.port, 6380);
  EXPECT_EQ(full.endpoint.db, 7);
  EXPECT_TRUE(full.endpoint.unix_path.empty());
  EXPECT_TRUE(full.endpoint.password.empty());
  EXPECT_EQ(full.prefix, "cinejobs:");
  EXPECT_EQ(full.endpoint.timeout, 5s);

  const auto bare = parse("redis://redis.internal");
  EXPECT_EQ(bare.endpoint.host, "redis.internal");
  EXPECT_EQ(bare.endpoint.port, 6379);
  EXPECT_EQ(bare.endpoint.db, 0);
  EXPECT_EQ(parse("redis://h/").endpoint.db, 0);

  const auto v6 = parse("redis://[::1]:7000/1");
  EXPECT_EQ(v6.endpoint.host, "::1");
  EXPECT_EQ(v6.endpoint.port, 7000);
  EXPECT_EQ(v6.endpoint.describe(), "[::1]:7000");
}

TEST(RedisUrl, ReadsPasswordAndUserPercentDecoded) {
  const auto password_only = parse("redis://:s3cret@127.0.0.1:6379/0");
  EXPECT_TRUE(password_only.endpoint.user.empty());
  EXPECT_EQ(password_only.endpoint.password, "s3cret");
  EXPECT_EQ(password_only.endpoint.host, "127.0.0.1");

  const auto with_user = parse("redis://alice:p%40ss%3Aw0rd@cache:6390/2");
  EXPECT_EQ(with_user.endpoint.user, "alice");
  EXPECT_EQ(with_user.endpoint.password, "p@ss:w0rd");
  EXPECT_EQ(with_user.endpoint.host, "cache");
  EXPECT_EQ(with_user.endpoint.port, 6390);
  EXPECT_EQ(with_user.endpoint.db, 2);
  EXPECT_EQ(with_user.endpoint.describe(), "cache:6390") << "messages never show the password";
}

TEST(RedisUrl, ReadsUnixSocketsWithDatabaseAndPassword) {
  const auto socket = parse("unix:///run/redis/redis.sock?db=4");
  EXPECT_EQ(socket.endpoint.unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(socket.endpoint.db, 4);
  EXPECT_EQ(socket.endpoint.describe(), "/run/redis/redis.sock");
  EXPECT_EQ(parse("unix://:pw@/tmp/r.sock").endpoint.password, "pw");
  EXPECT_EQ(parse("unix:///tmp/r.sock?password=pw").endpoint.password, "pw");
}

TEST(RedisUrl, ReadsPrefixTimeoutAndTheCommonParameters) {
  BrokerOptions options;
  const auto config = detail::parse_redis_url(
      "redis://h:1/0?prefix=app%3Ajobs:&timeout_ms=250&result_ttl_s=60&max_payload_bytes=100",
      options);
  EXPECT_EQ(config.prefix, "app:jobs:");
  EXPECT_EQ(config.endpoint.timeout, 250ms);
  EXPECT_EQ(options.result_ttl, 60s);
  EXPECT_EQ(options.max_payload_bytes, 100u);
}

TEST(RedisUrl, RefusesMalformedUrlsWithConfigErrorNamingTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"redis://", "no host"},
      {"redis://:6379/0", "no host"},
      {"redis://h:notaport/0", "port"},
      {"redis://h:70000/0", "port"},
      {"redis://h:/0", "port"},
      {"redis://h:6379/zero", "database"},
      {"redis://h:6379/-1", "database"},
      {"redis://h/0?nosuch=1", "unknown parameter 'nosuch'"},
      {"redis://h/0?db=1", "unknown parameter 'db'"},
      {"redis://h/0?prefix=", "prefix"},
      {"redis://h/0?timeout_ms=0", "timeout_ms"},
      {"redis://h/0?timeout_ms=soon", "timeout_ms"},
      {"redis://h/0?result_ttl_s=-1", "result_ttl_s"},
      {"redis://alice@h/0", "password"},
      {"redis://:@h/0", "password"},
      {"redis://[::1/0", "'['"},
      {"unix://relative.sock", "absolute path"},
      {"unix://", "absolute path"},
      {"unix:///tmp/r.sock?db=x", "database"},
      {"unix://:a@/tmp/r.sock?password=b", "password given twice"},
      {"rediss://h:6380/0", "TLS"},
  };
  for (const auto& [url, expected] : cases) {
    SCOPED_TRACE(url);
    try {
      open_broker(url);
      ADD_FAILURE() << "accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a ConfigError: " << e.what();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Connecting: unreachable, credentials, databases, unix sockets

TEST_F(RedisTest, UnreachableServerIsBrokerUnavailableNamingHostAndPortWithinTheTimeout) {
  // A port nobody listens on: the refused connection is reported at once.
  int port = 0;
  {
    RedisServer probe;
    port = probe.port();
  }
  const std::string url = "redis://127.0.0.1:" + std::to_string(port) + "/0?timeout_ms=500";
  const auto t0 = Clock::now();
  try {
    open_broker(url);
    ADD_FAILURE() << "opened a broker on a closed port";
  } catch (const BrokerUnavailable& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("cannot reach Redis at 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("is redis-server running?"), std::string::npos) << message;
  }
  EXPECT_LT(Clock::now() - t0, 3s);

  // An address that never answers (TEST-NET-1, RFC 5737): the connect timeout bounds the wait.
  const auto t1 = Clock::now();
  EXPECT_THROW(open_broker("redis://192.0.2.1:6379/0?timeout_ms=300"), BrokerUnavailable);
  EXPECT_LT(Clock::now() - t1, 3s);
}

TEST_F(RedisTest, PasswordIsRequiredCheckedAndUsedOnEveryConnection) {
  RedisServerOptions options;
  options.password = "open sesame";
  RedisServer server(options);
  const std::string base = "127.0.0.1:" + std::to_string(server.port()) + "/0";
  EXPECT_THROW(open_broker("redis://" + base), ConfigError) << "no password";
  EXPECT_THROW(open_broker("redis://:wrong@" + base), ConfigError) << "wrong password";
  auto broker = open_broker("redis://:open%20sesame@" + base + "?prefix=" + random_prefix());
  const std::string id = broker->enqueue(make_job()).id;
  EXPECT_EQ(state_of(*broker, id), JobState::kQueued);

  // An ACL user (Redis 6+) logs in with user and password.
  server.call({"ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all"});
  auto as_alice = open_broker("redis://alice:alice-pw@" + base + "?prefix=" + random_prefix());
  EXPECT_TRUE(as_alice->enqueue(make_job()).created);
  EXPECT_THROW(open_broker("redis://alice:nope@" + base), ConfigError);
}

TEST_F(RedisTest, DatabaseNumberSelectsTheDatabaseOnEveryConnection) {
  RedisServer& server = RedisServer::shared();
  const std::string prefix = random_prefix();
  auto broker = open_broker(server.url(prefix, 3));
  const std::string id = broker->enqueue(make_job()).id;
  const auto in_db3 = server.pipeline({{"SELECT", "3"}, {"EXISTS", prefix + "job:" + id}});
  EXPECT_EQ(in_db3.text, "1");
  EXPECT_EQ(server.call({"EXISTS", prefix + "job:" + id}).text, "0") << "written to db 0";
  EXPECT_THROW(open_broker(server.url(prefix, 999)), ConfigError) << "no database 999";
}

TEST_F(RedisTest, ConnectsThroughAUnixSocket) {
  RedisServerOptions options;
  options.unix_socket = true;
  RedisServer server(options);
  const std::string prefix = random_prefix();
  auto broker = open_broker("unix://" + server.socket_path() + "?db=2&prefix=" + prefix);
  const std::string id = broker->enqueue(make_job()).id;
  EXPECT_EQ(server.pipeline({{"SELECT", "2"}, {"EXISTS", prefix + "job:" + id}}).text, "1");
  const auto jobs = reserve(*broker, "default");
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, id);
}

// ---------------------------------------------------------------------------------------------
// Keys and prefixes

TEST_F(RedisTest, BrokersWithDifferentPrefixesOnOneServerDoNotSeeEachOthersJobs) {
  const std::string prefix_a = random_prefix();
  const std::string prefix_b = random_prefix();
  auto a = open_broker(shared_url(prefix_a));
  auto b = open_broker(shared_url(prefix_b));
  const std::string id = a->enqueue(make_job()).id;
  Job keyed = make_job();
  keyed.unique_key = "same-key";
  EXPECT_TRUE(a->enqueue(keyed).created);
  EXPECT_TRUE(b->enqueue(keyed).created) << "unique keys are per prefix";

  EXPECT_FALSE(b->get(id).has_value());
  EXPECT_EQ(b->list({}).size(), 1u);
  EXPECT_EQ(count_in(*b, JobState::kQueued), 1);
  EXPECT_EQ(b->purge(""), 1u);
  EXPECT_TRUE(reserve(*b, "default", 10).empty());
  EXPECT_EQ(reserve(*a, "default", 10).size(), 2u) << "b's purge touched a's jobs";

  // Every key lives under its prefix.
  RedisServer& server = RedisServer::shared();
  EXPECT_EQ(server.call({"EXISTS", prefix_a + "job:" + id}).text, "1");
  EXPECT_EQ(server.call({"EXISTS", prefix_a + "queues"}).text, "1");
  EXPECT_EQ(server.call({"EXISTS", "cinejobs:job:" + id}).text, "0");
}

TEST_F(RedisTest, ReservedJobsReadTheSameAsGet) {
  auto broker = open_broker(shared_url());
  Job job = make_job("t", "q");
  job.args = R"([1,"x"])";
  job.kwargs = R"({"k":null})";
  job.priority = -3;
  job.unique_key = "u";
  job.timeout_ms = 1500;
  broker->enqueue(job);
  const auto jobs = reserve(*broker, "q");
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0], get_job(*broker, jobs[0].id));
  const LeaseRef lease{jobs[0].id, jobs[0].lease_token};
  ASSERT_TRUE(broker->set_progress(lease, Progress{0.1 + 0.2, "s", "m"}));
  EXPECT_EQ(get_job(*broker, jobs[0].id).progress->fraction, 0.1 + 0.2)
      << "fractions round-trip exactly";
}

TEST_F(RedisTest, ADelayedJobWithADamagedPriorityFailsAloneWhenItComesDue) {
  const std::string prefix = random_prefix();
  auto broker = open_broker(shared_url(prefix));
  Job delayed = make_job("t", "q");
  delayed.run_at = now_ms() + 50;
  const std::string damaged = broker->enqueue(delayed).id;
  const std::string good = broker->enqueue(make_job("t", "q")).id;
  // reserve.lua ranks a due delayed job by its priority when it promotes it to the queue.
  RedisServer::shared().call({"HSET", prefix + "job:" + damaged, "priority", "high"});
  wait_for_clock(delayed.run_at + 1);

  std::vector<Job> jobs;
  ASSERT_NO_THROW(jobs = reserve(*broker, "q", 10));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, good);
  const Job failed = get_job(*broker, damaged);
  EXPECT_EQ(failed.state, JobState::kFailed);
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, "InvalidPayload");
  EXPECT_NE(failed.error->message.find(damaged), std::string::npos);
  EXPECT_NE(failed.error->message.find("'priority'"), std::string::npos) << failed.error->message;
}

// ---------------------------------------------------------------------------------------------
// Scripts and restarts

TEST_F(RedisTest, ScriptsAreReloadedAfterScriptFlush) {
  auto broker = open_broker(shared_url());
  broker->enqueue(make_job());
  RedisServer::shared().call({"SCRIPT", "FLUSH"});
  const auto jobs = reserve(*broker, "default");
  ASSERT_EQ(jobs.size(), 1u);
  RedisServer::shared().call({"SCRIPT", "FLUSH"});
  const Ack acks[] = {{{jobs[0].id, jobs[0].lease_token}, "1"}};
  EXPECT_EQ(broker->ack(acks), 1u);

  // A batch large enough to be sent as several pipelined script calls.
  RedisServer::shared().call({"SCRIPT", "FLUSH"});
  const std::vector<Job> many(1234, make_job("t", "bulk"));
  const auto results = broker->enqueue_many(many);
  EXPECT_EQ(results.size(), many.size());
  EXPECT_EQ(count_in(*broker, JobState::kQueued, "bulk"), 1234);
}

TEST_F(RedisTest, BrokerReconnectsByItselfAfterRedisServerRestarts) {
  RedisServerOptions options;
  options.appendonly = true;
  RedisServer server(options);
  auto broker = open_broker(server.url(random_prefix()) + "&timeout_ms=1000");
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.insert(broker->enqueue(make_job()).id);

  server.stop();
  // While it is down, calls fail fast with BrokerUnavailable and waits return without throwing.
  const auto t0 = Clock::now();
  EXPECT_THROW(broker->enqueue(make_job()), BrokerUnavailable);
  EXPECT_THROW(broker->get(*ids.begin()), BrokerUnavailable);
  const std::vector<std::string> queues = {"default"};
  broker->wait_for_jobs(queues, 200ms, std::stop_token{});
  EXPECT_LT(Clock::now() - t0, 5s);

  server.start();  // same port, same directory: the AOF brings the jobs back
  std::vector<Job> jobs;
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          for (Job& job : reserve(*broker, "default", 10)) jobs.push_back(std::move(job));
        } catch (const BrokerUnavailable&) {
          // reconnect backoff, or the server still loading its AOF
        }
        return jobs.size() >= ids.size();
      },
      10s, 20ms));
  std::set<std::string> got;
  for (const Job& job : jobs) got.insert(job.id);
  EXPECT_EQ(got, ids);
  std::vector<Ack> acks;
  for (const Job& job : jobs) acks.push_back({{job.id, job.lease_token}, "null"});
  EXPECT_EQ(broker->ack(acks), jobs.size());
}

TEST_F(RedisTest, IdleConnectionsClosedByTheServerAreReplacedWithoutAnError) {
  auto broker = open_broker(shared_url());
  broker->enqueue(make_job());
  // The server drops every normal client connection (as after a restart or an idle timeout).
  RedisServer::shared().call({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  EXPECT_EQ(reserve(*broker, "default").size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Blocking wait for jobs

// blocked_clients reads how many clients of the server are blocked (BLPOP).
int blocked_clients() {
  const RespValue info = RedisServer::shared().call({"INFO", "clients"});
  const auto at = info.text.find("blocked_clients:");
  if (at == std::string::npos) return -1;
  return std::stoi(info.text.substr(at + 16));
}

TEST_F(RedisTest, IdleWaiterWakesWithinMillisecondsOfAnEnqueueFromAnotherInstance) {
  const std::string prefix = random_prefix();
  auto waiter = open_broker(shared_url(prefix));
  auto producer = open_broker(shared_url(prefix));
  const std::vector<std::string> queues = {"other", "wake"};
  std::vector<std::chrono::microseconds> latencies;
  for (int round = 0; round < 20; ++round) {
    const int before = blocked_clients();
    std::atomic<bool> returned{false};
    Clock::time_point woke;
    std::jthread thread([&] {
      waiter->wait_for_jobs(queues, 10s, std::stop_token{});
      woke = Clock::now();
      returned = true;
    });
    // Enqueue only once the waiter is really blocked in Redis, to measure the wake-up itself.
    ASSERT_TRUE(wait_until([&] { return blocked_clients() > before || returned; }, 5s, 1ms));
    ASSERT_FALSE(returned) << "wait_for_jobs returned before any enqueue";
    const auto sent = Clock::now();
    producer->enqueue(make_job("t", "wake"));
    thread.join();
    latencies.push_back(std::chrono::duration_cast<std::chrono::microseconds>(woke - sent));
    ASSERT_EQ(reserve(*waiter, "wake").size(), 1u);
  }
  std::sort(latencies.begin(), latencies.end());
  std::cout << "[          ] enqueue-to-wake latency: median " << latencies[10].count()
            << " us, max " << latencies.back().count() << " us\n";
  EXPECT_LT(latencies.back(), 200ms) << "a blocked waiter must wake on an enqueue, not poll";
}

TEST_F(RedisTest, WaiterIgnoresEnqueuesIntoOtherQueuesAndHonoursMaxWait) {
  const std::string prefix = random_prefix();
  auto waiter = open_broker(shared_url(prefix));
  auto producer = open_broker(shared_url(prefix));
  producer->enqueue(make_job("t", "elsewhere"));
  const std::vector<std::string> queues = {"mine"};
  const auto t0 = Clock::now();
  waiter->wait_for_jobs(queues, 300ms, std::stop_token{});
  const auto waited = Clock::now() - t0;
  EXPECT_GE(waited, 250ms) << "woken by an enqueue into another queue";
  EXPECT_LT(waited, 3s);
}

TEST_F(RedisTest, WaiterWakesWhenADelayedJobBecomesDue) {
  auto broker = open_broker(shared_url());
  Job later = make_job();
  later.run_at = now_ms() + 300;
  broker->enqueue(later);
  const std::vector<std::string> queues = {"default"};
  std::vector<Job> got;
  const auto t0 = Clock::now();
  // Each wait returns at the latest when the scheduled job is due, not after the full 10 s.
  while (got.empty() && Clock::now() - t0 < 5s) {
    broker->wait_for_jobs(queues, 10s, std::stop_token{});
    got = reserve(*broker, "default");
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_GE(now_ms(), later.run_at);
  EXPECT_LT(Clock::now() - t0, 3s);
}

// ---------------------------------------------------------------------------------------------
// Job events for handles

TEST_F(RedisTest, WaitForUpdateReturnsWithinMillisecondsOfAChangeFromAnotherInstance) {
  const std::string prefix = random_prefix();
  auto handle_side = open_broker(shared_url(prefix));
  auto worker_side = open_broker(shared_url(prefix));
  const std::string id = handle_side->enqueue(make_job()).id;

  // The first wait subscribes and returns at once (the caller then reads the job).
  auto t0 = Clock::now();
  handle_side->wait_for_update(id, 5s);
  EXPECT_LT(Clock::now() - t0, 2s);

  // A change made after that read (reserve, progress, ack by another instance) ends the next
  // wait at once, even when it happened before the wait began.
  const auto jobs = reserve(*worker_side, "default");
  ASSERT_EQ(jobs.size(), 1u);
  t0 = Clock::now();
  handle_side->wait_for_update(id, 5s);
  EXPECT_LT(Clock::now() - t0, 1s) << "missed the reserve";
  EXPECT_EQ(state_of(*handle_side, id), JobState::kRunning);

  std::atomic<bool> returned{false};
  std::jthread waiter([&] {
    handle_side->wait_for_update(id, 10s);
    returned = true;
  });
  std::this_thread::sleep_for(50ms);  // let it block; a late start would only return at once
  EXPECT_FALSE(returned) << "returned with no change";
  const auto sent = Clock::now();
  ASSERT_TRUE(worker_side->set_progress({id, jobs[0].lease_token}, Progress{0.5, "half", ""}));
  waiter.join();
  EXPECT_LT(Clock::now() - sent, 200ms) << "progress did not wake the handle";

  const Ack acks[] = {{{id, jobs[0].lease_token}, "42"}};
  ASSERT_EQ(worker_side->ack(acks), 1u);
  t0 = Clock::now();
  handle_side->wait_for_update(id, 5s);
  EXPECT_LT(Clock::now() - t0, 1s) << "missed the ack";
  EXPECT_EQ(state_of(*handle_side, id), JobState::kSucceeded);
}

TEST_F(RedisTest, WaitForUpdateReturnsAfterMaxWaitWhenNothingChanges) {
  auto broker = open_broker(shared_url());
  const std::string id = broker->enqueue(make_job()).id;
  broker->wait_for_update(id, 5s);  // subscribes
  const auto t0 = Clock::now();
  broker->wait_for_update(id, 150ms);
  const auto waited = Clock::now() - t0;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 3s);
  // An unknown id creates nothing in the store.
  const std::string unknown = new_job_id();
  broker->wait_for_update(unknown, 100ms);
  EXPECT_FALSE(broker->get(unknown).has_value());
  EXPECT_EQ(broker->list({}).size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// A Worker on Redis

TEST_F(RedisTest, WorkerRunsEveryJobOnceAndWakesForNewJobs) {
  const std::string url = shared_url();
  auto broker = open_broker(url);
  WorkerOptions options;
  options.queues = {"w"};
  options.concurrency = 4;
  options.lease = 5s;
  options.heartbeat = 100ms;
  options.poll_interval = 2s;  // a worker that polled would miss the deadline below
  options.worker_id = "redis-test";
  Worker worker(open_broker(url), options);
  std::atomic<int> runs{0};
  worker.register_handler("count", [&](JobContext&) {
    ++runs;
    return std::string("null");
  });
  worker.start();

  std::vector<Job> jobs(500, make_job("count", "w"));
  broker->enqueue_many(jobs);
  ASSERT_TRUE(wait_until([&] { return count_in(*broker, JobState::kSucceeded, "w") == 500; }, 20s));
  EXPECT_EQ(runs.load(), 500);

  // Idle now: a new job is picked up well within the poll interval.
  ASSERT_TRUE(wait_until([&] { return blocked_clients() > 0; }, 5s, 1ms));
  const auto t0 = Clock::now();
  const std::string id = broker->enqueue(make_job("count", "w")).id;
  ASSERT_TRUE(wait_until([&] { return state_of(*broker, id) == JobState::kSucceeded; }, 5s, 1ms));
  EXPECT_LT(Clock::now() - t0, 1s);
  worker.stop(5s);
  EXPECT_EQ(runs.load(), 501);
}

}  // namespace
