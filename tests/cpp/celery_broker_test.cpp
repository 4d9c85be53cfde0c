// The Celery broker against a real redis-server, with messages laid out exactly as kombu's
// Redis transport writes them: reserve holds them in `unacked` / `unacked_index`, ack removes
// them and stores the result document, release and recovery restore them (through the
// exchange's binding) marked redelivered, a deferral waits for its time, pickle messages stay
// in the queue, priority lists are read in kombu's order, and a lease lost to another worker's
// restore is reported.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cinejobs/celery.hpp"
#include "cinejobs/errors.hpp"
#include "redis_server.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

// A protocol 2 message as kombu's Redis transport LPUSHes it (json.dumps of the envelope).
// The body, base64 of [[1, 2], {}, {...}], is the same for every test: only the broker reads it
// here, never the body.
std::string message(const std::string& id, const std::string& tag,
                    const std::string& content_type = "application/json",
                    const std::string& exchange = "", int retries = 0) {
  return R"({"body": "W1sxLCAyXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", )"
         R"("content-encoding": "utf-8", "content-type": ")" +
         content_type + R"(", "headers": {"lang": "py", "task": "proj.tasks.add", "id": ")" + id +
         R"(", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, )"
         R"("retries": )" +
         std::to_string(retries) + R"(, "timelimit": [null, null], "root_id": ")" + id +
         R"(", "parent_id": null, "argsrepr": "[1, 2]", "kwargsrepr": "{}", "origin": "gen1@host", )"
         R"("ignore_result": false}, "properties": {"correlation_id": ")" +
         id + R"(", "reply_to": "", "delivery_mode": 2, "delivery_info": {"exchange": ")" +
         exchange +
         R"(", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", )"
         R"("delivery_tag": ")" +
         tag + R"("}})";
}

class CeleryBrokerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (RedisServer::available() || in_ci()) server_ = std::make_unique<RedisServer>();
  }
  static void TearDownTestSuite() { server_.reset(); }
  void SetUp() override {
    if (!server_) GTEST_SKIP() << "redis-server is not installed";
    // The Celery layout has no key prefix: this suite's own server, emptied per test.
    server_->call({"FLUSHALL"});
    CeleryBrokerOptions options;
    options.broker_url = "redis://127.0.0.1:" + std::to_string(server_->port()) + "/0";
    options.backend_url = "redis://127.0.0.1:" + std::to_string(server_->port()) + "/1";
    options.visibility_timeout = 3600s;
    broker_ = open_celery_broker(options);
  }
  static RespValue call(const std::vector<std::string>& command) { return server_->call(command); }
  std::vector<Job> reserve(std::size_t n, std::chrono::milliseconds lease = 30s) {
    ReserveParams params;
    params.queues = {"celery"};
    params.max_jobs = n;
    params.lease = lease;
    return broker_->reserve(params);
  }

  static std::unique_ptr<RedisServer> server_;
  std::shared_ptr<Broker> broker_;
};

std::unique_ptr<RedisServer> CeleryBrokerTest::server_;

TEST_F(CeleryBrokerTest, ReserveHoldsMessagesInUnackedAsKombusConsumerDoes) {
  call({"LPUSH", "celery", message("id-1", "tag-1", "application/json", "", 2)});
  call({"LPUSH", "celery", message("id-2", "tag-2")});
  call({"LPUSH", "celery", message("id-3", "tag-3")});
  const auto jobs = reserve(2);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, "tag-1");  // the oldest first: producers LPUSH, consumers take the tail
  EXPECT_EQ(jobs[0].task, "proj.tasks.add");
  EXPECT_EQ(jobs[0].queue, "celery");
  EXPECT_EQ(jobs[0].attempt, 3);  // headers.retries + 1
  EXPECT_EQ(jobs[0].args, message("id-1", "tag-1", "application/json", "", 2));
  EXPECT_EQ(jobs[1].id, "tag-2");
  EXPECT_EQ(call({"LLEN", "celery"}).text, "1");
  EXPECT_EQ(call({"HGET", "unacked", "tag-1"}).text,
            "[" + message("id-1", "tag-1", "application/json", "", 2) + R"(, "", "celery"])");
  EXPECT_EQ(call({"ZCARD", "unacked_index"}).text, "2");
}

TEST_F(CeleryBrokerTest, AckEndsTheDeliveryAndStoresTheResultDocument) {
  call({"LPUSH", "celery", message("id-1", "tag-1")});
  const auto jobs = reserve(1);
  ASSERT_EQ(jobs.size(), 1u);
  const std::string document = R"({"status": "SUCCESS", "result": 3, "task_id": "id-1"})";
  const Ack acks[] = {Ack{LeaseRef{jobs[0].id, jobs[0].lease_token}, document}};
  EXPECT_EQ(broker_->ack(acks), 1u);
  EXPECT_EQ(call({"HLEN", "unacked"}).text, "0");
  EXPECT_EQ(call({"ZCARD", "unacked_index"}).text, "0");
  EXPECT_EQ(server_->pipeline({{"SELECT", "1"}, {"GET", "celery-task-meta-id-1"}}).text, document);
  EXPECT_GT(std::stoll(server_->pipeline({{"SELECT", "1"}, {"TTL", "celery-task-meta-id-1"}}).text),
            0);
  EXPECT_EQ(broker_->ack(acks), 0u);  // a second ack of one delivery does nothing
}

TEST_F(CeleryBrokerTest, ReleasePutsMessagesBackFirstInLineMarkedRedelivered) {
  call({"LPUSH", "celery", message("id-1", "tag-1")});
  call({"LPUSH", "celery", message("id-2", "tag-2")});
  const auto jobs = reserve(1);
  const LeaseRef leases[] = {LeaseRef{jobs[0].id, jobs[0].lease_token}};
  EXPECT_EQ(broker_->release(leases), 1u);
  EXPECT_EQ(call({"HLEN", "unacked"}).text, "0");
  const auto again = reserve(1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, "tag-1");
  EXPECT_NE(again[0].args.find(R"("redelivered":true)"), std::string::npos) << again[0].args;
}

TEST_F(CeleryBrokerTest, ADeferredMessageReturnsToItsQueueOnlyOnceItsTimeHasCome) {
  call({"LPUSH", "celery", message("later", "tag-later")});
  call({"LPUSH", "celery", message("now", "tag-now")});
  const auto jobs = reserve(2);
  ASSERT_EQ(jobs.size(), 2u);
  const Fail fails[] = {
      Fail{LeaseRef{jobs[0].id, jobs[0].lease_token}, {}, now_ms() + 3'600'000, JobState::kFailed},
      Fail{LeaseRef{jobs[1].id, jobs[1].lease_token}, {}, now_ms() - 1, JobState::kFailed}};
  EXPECT_EQ(broker_->fail(fails), 2u);
  EXPECT_EQ(broker_->recover_expired().requeued, 1u);
  const auto due = reserve(2);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, "tag-now");
  EXPECT_EQ(call({"HEXISTS", "unacked", "tag-later"}).text, "1");
}

TEST_F(CeleryBrokerTest, ASnoozedMessageIsHeldInPlaceUntilItsTimeAndAFinalFailureDropsIt) {
  call({"LPUSH", "celery", message("later", "tag-later")});
  call({"LPUSH", "celery", message("now", "tag-now")});
  call({"LPUSH", "celery", message("failed", "tag-failed")});
  const auto jobs = reserve(3);
  ASSERT_EQ(jobs.size(), 3u);
  const Snooze snoozes[] = {Snooze{LeaseRef{jobs[0].id, jobs[0].lease_token}, now_ms() + 3'600'000},
                            Snooze{LeaseRef{jobs[1].id, jobs[1].lease_token}, now_ms() - 1}};
  EXPECT_EQ(broker_->snooze(snoozes), 2u);
  const Fail fails[] = {
      Fail{LeaseRef{jobs[2].id, jobs[2].lease_token}, {}, std::nullopt, JobState::kFailed}};
  EXPECT_EQ(broker_->fail(fails), 1u);
  EXPECT_EQ(call({"HEXISTS", "unacked", "tag-failed"}).text, "0");
  EXPECT_EQ(broker_->recover_expired().requeued, 1u);
  const auto due = reserve(3);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, "tag-now");
  EXPECT_EQ(call({"HEXISTS", "unacked", "tag-later"}).text, "1");
  EXPECT_EQ(call({"LLEN", "celery"}).text, "0");
}

TEST_F(CeleryBrokerTest, RecoveryRestoresExpiredLeasesThroughTheExchangeBinding) {
  call({"SADD", "_kombu.binding.celery", std::string("celery\x06\x16\x06\x16") + "celery"});
  call({"LPUSH", "celery", message("id-1", "tag-1", "application/json", "celery")});
  ASSERT_EQ(reserve(1, 0ms).size(), 1u);  // a lease of zero: expired at once
  EXPECT_EQ(broker_->recover_expired().requeued, 1u);
  EXPECT_EQ(call({"LLEN", "celery"}).text, "1");
  EXPECT_EQ(call({"HLEN", "unacked"}).text, "0");
}

TEST_F(CeleryBrokerTest, APickleMessageIsLeftInTheQueueUndecoded) {
  call({"LPUSH", "celery", message("pickled", "tag-p", "application/x-python-serialize")});
  EXPECT_TRUE(reserve(5).empty());
  EXPECT_EQ(call({"LLEN", "celery"}).text, "1");
  EXPECT_EQ(call({"HLEN", "unacked"}).text, "0");
}

TEST_F(CeleryBrokerTest, PriorityListsAreReadInKombusOrder) {
  call({"LPUSH", std::string("celery\x06\x16") + "6", message("six", "tag-6")});
  call({"LPUSH", "celery", message("zero", "tag-0")});
  call({"LPUSH", std::string("celery\x06\x16") + "3", message("three", "tag-3")});
  const auto jobs = reserve(3);
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].id, "tag-0");
  EXPECT_EQ(jobs[1].id, "tag-3");
  EXPECT_EQ(jobs[2].id, "tag-6");
}

TEST_F(CeleryBrokerTest, ALeaseRestoredByAnotherWorkerIsReportedLost) {
  call({"LPUSH", "celery", message("id-1", "tag-1")});
  const auto jobs = reserve(1);
  call({"HDEL", "unacked", "tag-1"});  // what a Celery worker's restore_by_tag does first
  const LeaseRef leases[] = {LeaseRef{jobs[0].id, jobs[0].lease_token}};
  const auto extended = broker_->extend(leases, 30s);
  ASSERT_EQ(extended.size(), 1u);
  EXPECT_FALSE(extended[0].owned);
  const Ack acks[] = {Ack{leases[0], R"({"status": "SUCCESS"})"}};
  EXPECT_EQ(broker_->ack(acks), 0u);
  EXPECT_EQ(server_->pipeline({{"SELECT", "1"}, {"EXISTS", "celery-task-meta-id-1"}}).text, "0");
}

TEST_F(CeleryBrokerTest, TwoDeliveriesOfOneTaskIdAreHeldApart) {
  // A retry republishes its task id before the first delivery is acked.
  call({"LPUSH", "celery", message("same", "tag-a")});
  call({"LPUSH", "celery", message("same", "tag-b", "application/json", "", 1)});
  const auto jobs = reserve(2);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_NE(jobs[0].id, jobs[1].id);
  const Ack acks[] = {Ack{LeaseRef{jobs[0].id, jobs[0].lease_token}, "null"},
                      Ack{LeaseRef{jobs[1].id, jobs[1].lease_token}, R"({"status": "SUCCESS"})"}};
  EXPECT_EQ(broker_->ack(acks), 2u);
  EXPECT_EQ(server_->pipeline({{"SELECT", "1"}, {"GET", "celery-task-meta-same"}}).text,
            R"({"status": "SUCCESS"})");
}

TEST_F(CeleryBrokerTest, UrlsThatAreNotRedisAreRefused) {
  CeleryBrokerOptions options;
  options.broker_url = "amqp://guest@localhost//";
  EXPECT_THROW(open_celery_broker(options), ConfigError);
}

}  // namespace
