// The broker conformance suite: the specification every broker keeps (DESIGN.md "Guarantees
// every broker keeps" and the contract comments of broker.hpp). Each test body runs against every
// factory in broker_factories(); a new broker kind only adds a factory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "broker_factories.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job.hpp"
#include "cinejobs/json_text.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

class BrokerConformance : public ::testing::TestWithParam<BrokerFactory> {
 protected:
  void SetUp() override {
    store_ = GetParam().make_store();
    broker_ = store_->open();
  }
  void TearDown() override {
    broker_.reset();
    store_.reset();
  }

  std::string enqueue(const Job& job) {
    const EnqueueResult r = broker_->enqueue(job);
    EXPECT_TRUE(r.created) << "enqueue of a job without a live unique key must create it";
    return r.id;
  }

  std::vector<Job> reserve(const std::vector<std::string>& queues, std::size_t max_jobs = 1,
                           std::chrono::milliseconds lease = 30s) {
    ReserveParams params;
    params.queues = queues;
    params.max_jobs = max_jobs;
    params.lease = lease;
    params.worker_id = "conformance";
    return broker_->reserve(params);
  }

  // reserve_one reserves exactly one job or throws (which fails the test).
  Job reserve_one(const std::string& queue = "default", std::chrono::milliseconds lease = 30s) {
    auto jobs = reserve({queue}, 1, lease);
    if (jobs.size() != 1) {
      throw std::runtime_error("expected to reserve one job from queue '" + queue + "', got " +
                               std::to_string(jobs.size()));
    }
    return jobs.front();
  }

  std::vector<Job> list_all(ListParams params = {}) {
    params.limit = 100000;
    return broker_->list(params);
  }

  static std::set<std::string> ids_of(const std::vector<Job>& jobs) {
    std::set<std::string> ids;
    for (const auto& j : jobs) ids.insert(j.id);
    return ids;
  }

  static LeaseRef lease_of(const Job& job) { return {job.id, job.lease_token}; }

  std::size_t ack_one(const Job& job, std::string result = "null") {
    const Ack acks[] = {{lease_of(job), std::move(result)}};
    return broker_->ack(acks);
  }
  std::size_t fail_one(const Job& job, JobFailure error, std::optional<EpochMs> retry_at = {},
                       JobState final_state = JobState::kFailed) {
    const Fail fails[] = {{lease_of(job), std::move(error), retry_at, final_state}};
    return broker_->fail(fails);
  }
  std::size_t release_one(const Job& job) {
    const LeaseRef leases[] = {lease_of(job)};
    return broker_->release(leases);
  }
  std::size_t snooze_one(const Job& job, EpochMs run_at) {
    const Snooze snoozes[] = {{lease_of(job), run_at}};
    return broker_->snooze(snoozes);
  }
  ExtendResult extend_one(const Job& job, std::chrono::milliseconds lease) {
    const LeaseRef leases[] = {lease_of(job)};
    auto results = broker_->extend(leases, lease);
    if (results.size() != 1) {
      throw std::runtime_error("extend of one lease returned " + std::to_string(results.size()) +
                               " results");
    }
    return results.front();
  }

  std::unique_ptr<BrokerStore> store_;
  std::shared_ptr<Broker> broker_;
};

std::string factory_name(const ::testing::TestParamInfo<BrokerFactory>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(AllBrokers, BrokerConformance, ::testing::ValuesIn(broker_factories()),
                         factory_name);

const JobFailure kFailure{"ValueError", "bad input: \"x\"", "Traceback (most recent call last):\n"};

// ---------------------------------------------------------------------------------------------
// Identity, round trip, durability

TEST_P(BrokerConformance, KindNamesTheFactoryAndUrlIsNotEmpty) {
  EXPECT_EQ(broker_->kind(), GetParam().name);
  EXPECT_FALSE(broker_->url().empty());
}

TEST_P(BrokerConformance, EnqueueThenGetRoundTripsEveryField) {
  Job job = make_job("media.transcode", "video");
  job.id = new_job_id();
  job.args = R"([1,"two",{"three":[3.5,null,true]},"é日本 \u0001"])";
  job.kwargs = R"({"codec":"av1","opts":{"crf":30,"tags":["a","b"]}})";
  job.priority = 7;
  job.run_at = now_ms() - 5000;
  job.max_attempts = 5;
  job.unique_key = "transcode:42 ✓";
  job.timeout_ms = 60000;

  const EpochMs before = now_ms();
  const EnqueueResult r = broker_->enqueue(job);
  const EpochMs after = now_ms();
  EXPECT_TRUE(r.created);
  EXPECT_EQ(r.id, job.id) << "a given id is kept";

  const Job stored = get_job(*broker_, r.id);
  EXPECT_EQ(stored.id, job.id);
  EXPECT_EQ(stored.task, job.task);
  EXPECT_EQ(stored.queue, job.queue);
  EXPECT_EQ(stored.args, job.args);
  EXPECT_EQ(stored.kwargs, job.kwargs);
  EXPECT_EQ(stored.priority, job.priority);
  EXPECT_EQ(stored.run_at, job.run_at);
  EXPECT_EQ(stored.attempt, 0);
  EXPECT_EQ(stored.max_attempts, job.max_attempts);
  EXPECT_EQ(stored.unique_key, job.unique_key);
  EXPECT_EQ(stored.timeout_ms, job.timeout_ms);
  EXPECT_EQ(stored.state, JobState::kQueued);
  EXPECT_FALSE(stored.progress.has_value());
  EXPECT_FALSE(stored.result.has_value());
  EXPECT_FALSE(stored.error.has_value());
  EXPECT_GE(stored.created_at, before);
  EXPECT_LE(stored.created_at, after);
  EXPECT_EQ(stored.started_at, 0);
  EXPECT_EQ(stored.finished_at, 0);
  EXPECT_FALSE(stored.cancel_requested);

  // The same through list().
  const auto listed = list_all();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed.front().args, job.args);
  EXPECT_EQ(listed.front().kwargs, job.kwargs);
  EXPECT_EQ(listed.front().unique_key, job.unique_key);

  // A delivery and its result leave the enqueued fields as they were.
  const Job running = reserve_one("video");
  EXPECT_EQ(running.id, job.id);
  EXPECT_EQ(running.args, job.args);
  EXPECT_EQ(running.kwargs, job.kwargs);
  EXPECT_EQ(running.timeout_ms, job.timeout_ms);
  EXPECT_EQ(running.max_attempts, job.max_attempts);
  EXPECT_EQ(running.unique_key, job.unique_key);
  ASSERT_EQ(ack_one(running, R"({"ok":true,"title":"Amélie"})"), 1u);
  const Job done = get_job(*broker_, job.id);
  EXPECT_EQ(done.result, std::optional<std::string>(R"({"ok":true,"title":"Amélie"})"));
  EXPECT_EQ(done.task, job.task);
  EXPECT_EQ(done.priority, job.priority);
  EXPECT_EQ(done.created_at, stored.created_at);
}

TEST_P(BrokerConformance, ArgsKwargsAndResultAreKeptVerbatim) {
  Job job = make_job();
  job.args = R"([ 1, "two" ,  {"a": [1, 2]} ])";
  job.kwargs = "{ \"k\" : \"v\",\n \"n\": 1.50 }";
  const std::string id = enqueue(job);
  const Job running = reserve_one();
  EXPECT_EQ(running.args, job.args);
  EXPECT_EQ(running.kwargs, job.kwargs);
  ASSERT_EQ(ack_one(running, R"({ "x" : [ 1,2 ] })"), 1u);
  const Job done = get_job(*broker_, id);
  EXPECT_EQ(done.args, job.args);
  EXPECT_EQ(done.kwargs, job.kwargs);
  EXPECT_EQ(done.result, std::optional<std::string>(R"({ "x" : [ 1,2 ] })"));
}

TEST_P(BrokerConformance, EnqueueFillsInIdAndCreatedAtWhenEmpty) {
  const EpochMs before = now_ms();
  const EnqueueResult a = broker_->enqueue(make_job());
  const EnqueueResult b = broker_->enqueue(make_job());
  const EpochMs after = now_ms();
  EXPECT_TRUE(a.created);
  EXPECT_TRUE(b.created);
  EXPECT_EQ(a.id.size(), 36u);
  EXPECT_EQ(b.id.size(), 36u);
  EXPECT_NE(a.id, b.id);
  const Job stored = get_job(*broker_, a.id);
  EXPECT_EQ(stored.id, a.id);
  EXPECT_GE(stored.created_at, before);
  EXPECT_LE(stored.created_at, after);
  EXPECT_EQ(stored.attempt, 0);
  EXPECT_EQ(stored.queue, "default");
}

TEST_P(BrokerConformance, GetOfAnUnknownIdReturnsNothing) {
  EXPECT_FALSE(broker_->get(new_job_id()).has_value());
  EXPECT_FALSE(broker_->get("").has_value());
}

TEST_P(BrokerConformance, EnqueuedJobIsVisibleToASecondInstanceAndSurvivesReopening) {
  Job job = make_job("durable.task", "d");
  job.args = R"(["keep me"])";
  const std::string id = enqueue(job);
  {
    auto second = store_->open();
    const auto seen = second->get(id);
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->args, job.args);
  }
  broker_.reset();  // close every instance, then open the store afresh
  auto reopened = store_->open();
  const auto seen = reopened->get(id);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->task, "durable.task");
  EXPECT_EQ(seen->state, JobState::kQueued);
  ReserveParams params;
  params.queues = {"d"};
  const auto jobs = reopened->reserve(params);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs.front().id, id);
}

// ---------------------------------------------------------------------------------------------
// run_at: scheduled, queued once due, reserved only when due

TEST_P(BrokerConformance, FutureRunAtIsScheduledAndNotReservable) {
  Job job = make_job();
  job.run_at = now_ms() + 3600 * 1000;
  const std::string id = enqueue(job);
  EXPECT_EQ(state_of(*broker_, id), JobState::kScheduled);
  EXPECT_TRUE(reserve({"default"}, 10).empty());
  ListParams scheduled;
  scheduled.state = JobState::kScheduled;
  EXPECT_EQ(ids_of(list_all(scheduled)), std::set<std::string>{id});
  ListParams queued;
  queued.state = JobState::kQueued;
  EXPECT_TRUE(list_all(queued).empty());
  EXPECT_EQ(count_in(*broker_, JobState::kScheduled, "default"), 1);
  EXPECT_EQ(count_in(*broker_, JobState::kQueued), 0);
}

TEST_P(BrokerConformance, PastOrZeroRunAtIsQueuedAtOnce) {
  Job past = make_job();
  past.run_at = now_ms() - 60000;
  const std::string past_id = enqueue(past);
  const std::string now_id = enqueue(make_job());  // run_at 0 means now
  EXPECT_EQ(state_of(*broker_, past_id), JobState::kQueued);
  EXPECT_EQ(state_of(*broker_, now_id), JobState::kQueued);
  EXPECT_EQ(reserve({"default"}, 10).size(), 2u);
}

TEST_P(BrokerConformance, DelayedJobReadsQueuedOnceDue) {
  Job job = make_job();
  job.run_at = now_ms() + 400;
  const std::string id = enqueue(job);
  const Job fresh = get_job(*broker_, id);
  if (now_ms() < job.run_at) {
    EXPECT_EQ(fresh.state, JobState::kScheduled);
  }

  wait_for_clock(job.run_at + 1);
  // No reserve, no maintenance call: a due job simply reads as queued everywhere.
  EXPECT_EQ(state_of(*broker_, id), JobState::kQueued);
  ListParams queued;
  queued.state = JobState::kQueued;
  EXPECT_EQ(ids_of(list_all(queued)), std::set<std::string>{id});
  ListParams scheduled;
  scheduled.state = JobState::kScheduled;
  EXPECT_TRUE(list_all(scheduled).empty());
  EXPECT_EQ(count_in(*broker_, JobState::kQueued, "default"), 1);
  EXPECT_EQ(count_in(*broker_, JobState::kScheduled), 0);
}

TEST_P(BrokerConformance, DelayedJobIsReservedOnlyOnceDue) {
  Job job = make_job();
  job.run_at = now_ms() + 300;
  const std::string id = enqueue(job);
  std::optional<Job> got;
  ASSERT_TRUE(wait_until(
      [&] {
        auto jobs = reserve({"default"}, 5);
        const EpochMs after = now_ms();
        if (jobs.empty()) return false;
        EXPECT_GE(after, job.run_at) << "reserved before its run_at";
        got = jobs.front();
        return true;
      },
      5s, 2ms));
  EXPECT_EQ(got->id, id);
  EXPECT_GE(got->started_at, job.run_at);
  EXPECT_EQ(got->attempt, 1);
}

// ---------------------------------------------------------------------------------------------
// Reserve: order, limits, attempts, leases

TEST_P(BrokerConformance, ReserveTakesHighestPriorityFirstThenFifo) {
  const std::vector<std::pair<int, std::string>> order_of_enqueue = {
      {0, "p0-a"}, {5, "p5-a"}, {0, "p0-b"}, {10, "p10"}, {5, "p5-b"}, {-1, "pm1"}, {0, "p0-c"}};
  std::map<std::string, std::string> label_of;
  for (const auto& [priority, label] : order_of_enqueue) {
    Job job = make_job(label);
    job.priority = priority;
    label_of[enqueue(job)] = label;
  }
  std::vector<std::string> got;
  for (std::size_t i = 0; i < order_of_enqueue.size(); ++i) {
    got.push_back(label_of.at(reserve_one().id));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"p10", "p5-a", "p5-b", "p0-a", "p0-b", "p0-c", "pm1"}));
  EXPECT_TRUE(reserve({"default"}).empty());
}

TEST_P(BrokerConformance, ReserveTakesEarlierRunAtFirstWithinAPriority) {
  const EpochMs now = now_ms();
  Job late = make_job("late");
  late.run_at = now - 1000;
  Job early = make_job("early");
  early.run_at = now - 5000;
  Job urgent = make_job("urgent");
  urgent.run_at = now - 100;
  urgent.priority = 1;
  enqueue(late);
  enqueue(early);
  enqueue(urgent);
  EXPECT_EQ(reserve_one().task, "urgent");
  EXPECT_EQ(reserve_one().task, "early");
  EXPECT_EQ(reserve_one().task, "late");
}

TEST_P(BrokerConformance, ReservePrefersHighestPriorityAcrossTheNamedQueues) {
  Job low = make_job("low", "a");
  Job high = make_job("high", "b");
  high.priority = 5;
  enqueue(low);
  enqueue(high);
  const auto first = reserve({"a", "b"}, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first.front().task, "high");
  const auto second = reserve({"a", "b"}, 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second.front().task, "low");
}

TEST_P(BrokerConformance, ReserveNeverReturnsMoreThanMaxJobs) {
  for (int i = 0; i < 10; ++i) enqueue(make_job());
  EXPECT_EQ(reserve({"default"}, 3).size(), 3u);
  EXPECT_EQ(reserve({"default"}, 1).size(), 1u);
  EXPECT_EQ(reserve({"default"}, 4).size(), 4u);
  EXPECT_EQ(reserve({"default"}, 100).size(), 2u) << "only two were left";
  EXPECT_EQ(count_in(*broker_, JobState::kRunning), 10);
}

TEST_P(BrokerConformance, ReserveIncrementsAttemptSetsStartedAtAndDistinctLeaseTokens) {
  std::set<std::string> enqueued;
  for (int i = 0; i < 5; ++i) enqueued.insert(enqueue(make_job()));
  const EpochMs before = now_ms();
  const auto jobs = reserve({"default"}, 5);
  const EpochMs after = now_ms();
  ASSERT_EQ(jobs.size(), 5u);
  std::set<std::uint64_t> tokens;
  for (const Job& job : jobs) {
    EXPECT_EQ(job.state, JobState::kRunning);
    EXPECT_EQ(job.attempt, 1);
    EXPECT_GE(job.started_at, before);
    EXPECT_LE(job.started_at, after);
    EXPECT_NE(job.lease_token, 0u);
    tokens.insert(job.lease_token);
    const Job stored = get_job(*broker_, job.id);
    EXPECT_EQ(stored.state, JobState::kRunning);
    EXPECT_EQ(stored.attempt, 1);
    EXPECT_EQ(stored.started_at, job.started_at);
  }
  EXPECT_EQ(tokens.size(), 5u) << "every delivery carries its own lease token";
  EXPECT_EQ(ids_of(jobs), enqueued);
}

TEST_P(BrokerConformance, ReserveNeverReturnsAJobTwice) {
  std::set<std::string> enqueued;
  for (int i = 0; i < 40; ++i) enqueued.insert(enqueue(make_job()));
  std::vector<std::string> got;
  for (std::size_t batch = 1; got.size() < enqueued.size() && batch < 100; ++batch) {
    for (const Job& job : reserve({"default"}, batch)) got.push_back(job.id);
  }
  const std::set<std::string> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), got.size()) << "a job was delivered twice";
  EXPECT_EQ(unique, enqueued);
  EXPECT_TRUE(reserve({"default"}, 100).empty()) << "running jobs with live leases are not free";
}

TEST_P(BrokerConformance, ReserveTakesOnlyFromTheNamedQueues) {
  const std::string a = enqueue(make_job("t", "a"));
  const std::string b = enqueue(make_job("t", "b"));
  const std::string c = enqueue(make_job("t", "c"));
  const auto jobs = reserve({"a", "b"}, 10);
  EXPECT_EQ(ids_of(jobs), (std::set<std::string>{a, b}));
  EXPECT_EQ(state_of(*broker_, c), JobState::kQueued);
  EXPECT_TRUE(reserve({"a", "b"}, 10).empty());
  EXPECT_TRUE(reserve({"nosuch"}, 10).empty());
  EXPECT_EQ(reserve_one("c").id, c);
}

// ---------------------------------------------------------------------------------------------
// Ack, fail, release, extend, progress

TEST_P(BrokerConformance, ReserveFailsAnUndecodableJobAloneAndReturnsTheRestOfTheBatch) {
  const std::string first = enqueue(make_job("good.first"));
  const std::string poisoned = enqueue(make_job("poisoned"));
  const std::string last = enqueue(make_job("good.last"));
  store_->corrupt_job(poisoned);

  std::vector<Job> batch;
  ASSERT_NO_THROW(batch = reserve({"default"}, 10)) << "one damaged job must not fail the batch";
  EXPECT_EQ(ids_of(batch), (std::set<std::string>{first, last}));
  for (const Job& job : batch) EXPECT_EQ(ack_one(job), 1u);

  const Job failed = get_job(*broker_, poisoned);
  EXPECT_EQ(failed.state, JobState::kFailed);
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, "InvalidPayload");
  EXPECT_NE(failed.error->message.find(poisoned), std::string::npos) << failed.error->message;
  EXPECT_NE(failed.error->message.find("field '"), std::string::npos) << failed.error->message;
  EXPECT_GT(failed.finished_at, 0);
  EXPECT_EQ(get_job(*broker_, first).state, JobState::kSucceeded);
  EXPECT_EQ(get_job(*broker_, last).state, JobState::kSucceeded);
  EXPECT_TRUE(reserve({"default"}, 10).empty()) << "the failed job is never delivered again";
  // Reading jobs still works with the damaged one among them.
  EXPECT_EQ(list_all().size(), 3u);
  EXPECT_EQ(count_in(*broker_, JobState::kFailed), 1);
}

TEST_P(BrokerConformance, ReserveTakesFromSixHundredQueuesInPriorityOrder) {
  constexpr int kQueues = 600;
  std::vector<std::string> queues;
  std::vector<Job> jobs;
  for (int i = 0; i < kQueues; ++i) {
    queues.push_back(cat({"q", std::to_string(i)}));
    Job job = make_job("many.queues", queues.back());
    job.priority = i % 7;
    jobs.push_back(job);
  }
  // The highest priority job sits in the last queue named.
  jobs.back().priority = 100;
  broker_->enqueue_many(jobs);

  std::vector<Job> first;
  try {
    first = reserve(queues, 10);
  } catch (const std::exception& e) {
    FAIL() << "reserve of 600 queues threw: " << e.what();
  }
  ASSERT_EQ(first.size(), 10u);
  EXPECT_EQ(first.front().queue, queues.back());
  for (std::size_t i = 1; i < first.size(); ++i) EXPECT_EQ(first[i].priority, 6);
  const auto rest = reserve(queues, 1000);
  EXPECT_EQ(rest.size(), static_cast<std::size_t>(kQueues) - 10);
  for (std::size_t i = 1; i < rest.size(); ++i) {
    EXPECT_GE(rest[i - 1].priority, rest[i].priority) << "at " << i;
  }
  EXPECT_TRUE(reserve(queues, 10).empty());
}

TEST_P(BrokerConformance, AckStoresResultFinishedAtAndSucceeded) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  const EpochMs before = now_ms();
  EXPECT_EQ(ack_one(running, R"({"n":1,"title":"Léon"})"), 1u);
  const EpochMs after = now_ms();
  const Job done = get_job(*broker_, id);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  EXPECT_EQ(done.result, std::optional<std::string>(R"({"n":1,"title":"Léon"})"));
  EXPECT_GE(done.finished_at, before);
  EXPECT_LE(done.finished_at, after);
  EXPECT_GE(done.finished_at, done.started_at);
  EXPECT_EQ(done.attempt, 1);
  EXPECT_FALSE(done.error.has_value());
}

TEST_P(BrokerConformance, AckAppliesOnceAndCountsOnlyOwnedDeliveries) {
  const std::string a = enqueue(make_job());
  const std::string b = enqueue(make_job());
  const auto jobs = reserve({"default"}, 2);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(ack_one(jobs[0], "1"), 1u);
  const Job after_first = get_job(*broker_, jobs[0].id);
  std::vector<Ack> acks;
  acks.push_back({lease_of(jobs[0]), "2"});             // already acked
  acks.push_back({lease_of(jobs[1]), "3"});             // owned
  acks.push_back({LeaseRef{new_job_id(), 1234}, "4"});  // unknown id
  EXPECT_EQ(broker_->ack(acks), 1u);
  EXPECT_EQ(get_job(*broker_, jobs[0].id), after_first) << "a second ack changed the job";
  EXPECT_EQ(get_job(*broker_, jobs[1].id).result, std::optional<std::string>("3"));
  EXPECT_EQ(ids_of(jobs), (std::set<std::string>{a, b}));
}

TEST_P(BrokerConformance, StaleLeaseTokenAppliesToNothingAfterTheJobWasRedelivered) {
  Job job = make_job();
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  const Job first = reserve_one("default", 50ms);

  // Let the lease expire; the rescuer requeues it and another delivery takes it.
  std::optional<Job> second;
  ASSERT_TRUE(wait_until(
      [&] {
        broker_->recover_expired();
        auto jobs = reserve({"default"}, 1);
        if (!jobs.empty()) second = jobs.front();
        return second.has_value();
      },
      10s));
  ASSERT_EQ(second->id, id);
  EXPECT_EQ(second->attempt, 2);
  EXPECT_NE(second->lease_token, first.lease_token);

  const Job before = get_job(*broker_, id);
  EXPECT_EQ(ack_one(first, R"("stale")"), 0u);
  EXPECT_EQ(fail_one(first, kFailure), 0u);
  EXPECT_EQ(fail_one(first, kFailure, now_ms() + 10), 0u);
  EXPECT_EQ(release_one(first), 0u);
  const ExtendResult ext = extend_one(first, 60s);
  EXPECT_EQ(ext.id, id);
  EXPECT_FALSE(ext.owned);
  EXPECT_FALSE(broker_->set_progress(lease_of(first), Progress{0.5, "stale", "stale"}));
  EXPECT_EQ(get_job(*broker_, id), before) << "a stale delivery changed the job";

  // The live delivery still owns it; after it finishes, the stale one still cannot touch it.
  EXPECT_EQ(ack_one(*second, R"("live")"), 1u);
  const Job done = get_job(*broker_, id);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  EXPECT_EQ(fail_one(first, kFailure), 0u);
  EXPECT_EQ(fail_one(*second, kFailure), 0u) << "a finished delivery failed its job again";
  EXPECT_EQ(ack_one(first, R"("stale")"), 0u);
  EXPECT_EQ(get_job(*broker_, id), done) << "a job ended in two final states";
}

TEST_P(BrokerConformance, WrongLeaseTokenAppliesToNothing) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  Job forged = running;
  forged.lease_token = running.lease_token + 1;
  const Job before = get_job(*broker_, id);
  EXPECT_EQ(ack_one(forged), 0u);
  EXPECT_EQ(fail_one(forged, kFailure), 0u);
  EXPECT_EQ(release_one(forged), 0u);
  EXPECT_FALSE(extend_one(forged, 60s).owned);
  EXPECT_FALSE(broker_->set_progress(lease_of(forged), Progress{0.1, "x", "y"}));
  EXPECT_EQ(get_job(*broker_, id), before);
  EXPECT_EQ(ack_one(running), 1u);
}

TEST_P(BrokerConformance, FailWithRetryAtSchedulesTheJobUntilRetryAt) {
  Job job = make_job();
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  const Job first = reserve_one();
  const EpochMs retry_at = now_ms() + 300;
  EXPECT_EQ(fail_one(first, kFailure, retry_at), 1u);

  const Job waiting = get_job(*broker_, id);
  if (now_ms() < retry_at) {
    EXPECT_EQ(waiting.state, JobState::kScheduled);
  }
  EXPECT_EQ(waiting.run_at, retry_at);
  EXPECT_EQ(waiting.error, std::optional<JobFailure>(kFailure)) << "the last failure is kept";
  EXPECT_EQ(waiting.attempt, 1);
  EXPECT_EQ(waiting.finished_at, 0);
  EXPECT_FALSE(waiting.result.has_value());

  std::optional<Job> again;
  ASSERT_TRUE(wait_until(
      [&] {
        auto jobs = reserve({"default"}, 1);
        if (jobs.empty()) return false;
        EXPECT_GE(now_ms(), retry_at) << "retried before retry_at";
        again = jobs.front();
        return true;
      },
      5s, 2ms));
  EXPECT_EQ(again->id, id);
  EXPECT_EQ(again->attempt, 2);
  EXPECT_GT(again->started_at, 0);
  EXPECT_NE(again->lease_token, first.lease_token);
  EXPECT_EQ(ack_one(first), 0u) << "the failed delivery no longer owns the job";
  EXPECT_EQ(ack_one(*again, "7"), 1u);
  EXPECT_EQ(state_of(*broker_, id), JobState::kSucceeded);
}

TEST_P(BrokerConformance, FailWithoutRetryAtEndsFailedWithTypeMessageAndTraceback) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  const EpochMs before = now_ms();
  EXPECT_EQ(fail_one(running, kFailure), 1u);
  const Job failed = get_job(*broker_, id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, kFailure.type);
  EXPECT_EQ(failed.error->message, kFailure.message);
  EXPECT_EQ(failed.error->traceback, kFailure.traceback);
  EXPECT_GE(failed.finished_at, before);
  EXPECT_FALSE(failed.result.has_value());
  EXPECT_TRUE(reserve({"default"}, 10).empty()) << "a failed job is final";
}

TEST_P(BrokerConformance, FailWithFinalStateCancelledEndsCancelled) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  EXPECT_EQ(fail_one(running, JobFailure{"JobCancelled", "cancelled", ""}, std::nullopt,
                     JobState::kCancelled),
            1u);
  const Job cancelled = get_job(*broker_, id);
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_GT(cancelled.finished_at, 0);
  EXPECT_TRUE(reserve({"default"}, 10).empty());
}

TEST_P(BrokerConformance, ReleaseReturnsTheJobToQueuedWithoutCountingTheAttempt) {
  Job job = make_job();
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  const Job first = reserve_one();
  ASSERT_EQ(first.attempt, 1);
  EXPECT_EQ(release_one(first), 1u);
  const Job released = get_job(*broker_, id);
  EXPECT_EQ(released.state, JobState::kQueued);
  EXPECT_EQ(release_one(first), 0u) << "a released delivery no longer owns the job";
  EXPECT_EQ(ack_one(first), 0u);

  const Job second = reserve_one();
  EXPECT_EQ(second.id, id);
  EXPECT_EQ(second.attempt, first.attempt) << "release must not count the attempt";
  EXPECT_NE(second.lease_token, first.lease_token);
  EXPECT_EQ(release_one(second), 1u);
  EXPECT_EQ(reserve_one().attempt, first.attempt);
}

TEST_P(BrokerConformance, ReleaseOnTheLastAttemptKeepsTheJobReservable) {
  Job job = make_job();
  job.max_attempts = 1;
  const std::string id = enqueue(job);
  const Job first = reserve_one();
  EXPECT_EQ(release_one(first), 1u);
  const Job again = reserve_one();
  EXPECT_EQ(again.id, id);
  EXPECT_EQ(again.attempt, 1);
  EXPECT_EQ(ack_one(again), 1u);
  EXPECT_EQ(state_of(*broker_, id), JobState::kSucceeded);
}

TEST_P(BrokerConformance, SnoozeSchedulesTheJobWithoutCountingTheAttempt) {
  Job job = make_job();
  job.max_attempts = 1;
  const std::string id = enqueue(job);
  const Job first = reserve_one();
  ASSERT_EQ(first.attempt, 1);
  const EpochMs run_at = now_ms() + 300;
  EXPECT_EQ(snooze_one(first, run_at), 1u);
  const Job snoozed = get_job(*broker_, id);
  EXPECT_EQ(snoozed.state, JobState::kScheduled);
  EXPECT_EQ(snoozed.run_at, run_at);
  EXPECT_EQ(snoozed.attempt, 0) << "a snoozed delivery is not an attempt";
  EXPECT_EQ(snooze_one(first, run_at), 0u) << "a snoozed delivery no longer owns the job";
  EXPECT_EQ(ack_one(first), 0u);
  EXPECT_TRUE(reserve({"default"}, 10).empty()) << "a snoozed job waits for its run_at";

  wait_for_clock(run_at);
  const Job second = reserve_one();
  EXPECT_EQ(second.id, id);
  EXPECT_EQ(second.attempt, 1) << "max_attempts 1 still allows the run a snooze deferred";
  EXPECT_EQ(ack_one(second), 1u);
  EXPECT_EQ(state_of(*broker_, id), JobState::kSucceeded);
}

TEST_P(BrokerConformance, SnoozeToAPastRunAtQueuesTheJobAtOnce) {
  const std::string id = enqueue(make_job());
  const Job first = reserve_one();
  EXPECT_EQ(snooze_one(first, now_ms() - 10), 1u);
  EXPECT_EQ(state_of(*broker_, id), JobState::kQueued);
  EXPECT_EQ(reserve_one().id, id);
}

TEST_P(BrokerConformance, SnoozeOfACancelRequestedJobEndsItCancelled) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  EXPECT_EQ(broker_->cancel(id), JobState::kRunning);
  EXPECT_EQ(snooze_one(running, now_ms() + 60'000), 1u);
  const Job cancelled = get_job(*broker_, id);
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_GT(cancelled.finished_at, 0);
}

TEST_P(BrokerConformance, SnoozeAppliesABatchAndSkipsForeignLeases) {
  for (int i = 0; i < 3; ++i) enqueue(make_job());
  const std::vector<Job> jobs = reserve({"default"}, 3);
  ASSERT_EQ(jobs.size(), 3u);
  Job forged = jobs[2];
  forged.lease_token += 1;
  const EpochMs later = now_ms() + 60'000;
  const Snooze snoozes[] = {
      {lease_of(jobs[0]), later}, {lease_of(jobs[1]), later}, {lease_of(forged), later}};
  EXPECT_EQ(broker_->snooze(snoozes), 2u);
  EXPECT_EQ(state_of(*broker_, jobs[0].id), JobState::kScheduled);
  EXPECT_EQ(state_of(*broker_, jobs[1].id), JobState::kScheduled);
  EXPECT_EQ(state_of(*broker_, jobs[2].id), JobState::kRunning);
  EXPECT_EQ(broker_->snooze(std::span<const Snooze>{}), 0u);
}

TEST_P(BrokerConformance, ExtendPushesTheLeasePastItsOriginalExpiry) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one("default", 100ms);
  const ExtendResult ext = extend_one(running, 30s);
  EXPECT_EQ(ext.id, id);
  EXPECT_TRUE(ext.owned);
  EXPECT_FALSE(ext.cancel_requested);

  wait_for_clock(running.started_at + 400);  // well past the original 100 ms lease
  const RecoverReport report = broker_->recover_expired();
  EXPECT_EQ(report.requeued, 0u);
  EXPECT_EQ(report.failed, 0u);
  EXPECT_EQ(state_of(*broker_, id), JobState::kRunning);
  EXPECT_TRUE(reserve({"default"}, 10).empty());
  EXPECT_EQ(ack_one(running), 1u);
}

TEST_P(BrokerConformance, ExtendReportsEachLeaseInOrder) {
  const std::string a = enqueue(make_job());
  const std::string b = enqueue(make_job());
  const auto jobs = reserve({"default"}, 2);
  ASSERT_EQ(jobs.size(), 2u);
  ASSERT_EQ(ack_one(jobs[1]), 1u);
  const LeaseRef leases[] = {lease_of(jobs[0]), lease_of(jobs[1])};
  const auto results = broker_->extend(leases, 30s);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].id, jobs[0].id);
  EXPECT_TRUE(results[0].owned);
  EXPECT_EQ(results[1].id, jobs[1].id);
  EXPECT_FALSE(results[1].owned) << "a finished job's lease is no longer owned";
  EXPECT_EQ(ids_of(jobs), (std::set<std::string>{a, b}));
}

TEST_P(BrokerConformance, ExtendReportsCancelRequestedAfterCancelOfARunningJob) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  EXPECT_EQ(broker_->cancel(id), JobState::kRunning);
  const Job marked = get_job(*broker_, id);
  EXPECT_EQ(marked.state, JobState::kRunning);
  EXPECT_TRUE(marked.cancel_requested);

  const ExtendResult ext = extend_one(running, 30s);
  EXPECT_TRUE(ext.owned);
  EXPECT_TRUE(ext.cancel_requested);

  EXPECT_EQ(fail_one(running, JobFailure{"JobCancelled", "cancelled while running", ""},
                     std::nullopt, JobState::kCancelled),
            1u);
  EXPECT_EQ(state_of(*broker_, id), JobState::kCancelled);
}

TEST_P(BrokerConformance, SetProgressStoresTheOwnersProgress) {
  const std::string id = enqueue(make_job());
  const Job running = reserve_one();
  const Progress p1{0.25, "download", "1 of 4 — ünïcode"};
  EXPECT_TRUE(broker_->set_progress(lease_of(running), p1));
  EXPECT_EQ(get_job(*broker_, id).progress, std::optional<Progress>(p1));
  const Progress p2{1.0, "done", ""};
  EXPECT_TRUE(broker_->set_progress(lease_of(running), p2));
  EXPECT_EQ(get_job(*broker_, id).progress, std::optional<Progress>(p2));
  ASSERT_EQ(ack_one(running), 1u);
  EXPECT_FALSE(broker_->set_progress(lease_of(running), Progress{0.5, "late", ""}));
  EXPECT_EQ(get_job(*broker_, id).progress, std::optional<Progress>(p2));
}

// ---------------------------------------------------------------------------------------------
// Cancel

TEST_P(BrokerConformance, CancelOfAQueuedJobEndsItAtOnceAndItIsNeverReserved) {
  const std::string id = enqueue(make_job());
  EXPECT_EQ(broker_->cancel(id), JobState::kCancelled);
  const Job cancelled = get_job(*broker_, id);
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_GT(cancelled.finished_at, 0);
  EXPECT_TRUE(reserve({"default"}, 10).empty());
  EXPECT_EQ(broker_->cancel(id), JobState::kCancelled) << "cancelling twice is harmless";
}

TEST_P(BrokerConformance, CancelOfAScheduledJobEndsItAtOnceAndItIsNeverReservedAfterRunAt) {
  Job job = make_job();
  job.run_at = now_ms() + 150;
  const std::string id = enqueue(job);
  EXPECT_EQ(broker_->cancel(id), JobState::kCancelled);
  EXPECT_EQ(state_of(*broker_, id), JobState::kCancelled);
  wait_for_clock(job.run_at + 50);
  EXPECT_TRUE(reserve({"default"}, 10).empty());
  EXPECT_EQ(state_of(*broker_, id), JobState::kCancelled);
}

TEST_P(BrokerConformance, CancelOfAFinalJobLeavesIt) {
  const std::string ok = enqueue(make_job());
  ASSERT_EQ(ack_one(reserve_one(), R"("done")"), 1u);
  Job once = make_job();
  once.max_attempts = 1;
  const std::string bad = enqueue(once);
  ASSERT_EQ(fail_one(reserve_one(), kFailure), 1u);

  const Job ok_before = get_job(*broker_, ok);
  const Job bad_before = get_job(*broker_, bad);
  EXPECT_EQ(broker_->cancel(ok), JobState::kSucceeded);
  EXPECT_EQ(broker_->cancel(bad), JobState::kFailed);
  EXPECT_EQ(get_job(*broker_, ok), ok_before);
  EXPECT_EQ(get_job(*broker_, bad), bad_before);
}

TEST_P(BrokerConformance, CancelOfAnUnknownIdThrowsJobNotFound) {
  EXPECT_THROW(broker_->cancel(new_job_id()), JobNotFound);
}

TEST_P(BrokerConformance, CancelledRunningJobIsNeverReservedAgain) {
  // Its worker died (the lease expires) ...
  const std::string dead = enqueue(make_job("t", "dead"));
  const Job dead_run = reserve_one("dead", 50ms);
  EXPECT_EQ(broker_->cancel(dead), JobState::kRunning);
  // ... or its worker stopped and released it.
  const std::string stopped = enqueue(make_job("t", "stopped"));
  const Job stopped_run = reserve_one("stopped");
  EXPECT_EQ(broker_->cancel(stopped), JobState::kRunning);
  release_one(stopped_run);

  wait_for_clock(dead_run.started_at + 150);
  broker_->recover_expired();
  EXPECT_TRUE(reserve({"dead", "stopped"}, 10).empty()) << "a cancel-requested job was delivered";
  EXPECT_TRUE(is_final(state_of(*broker_, dead)))
      << "a cancelled job whose worker died stays live forever: "
      << to_string(state_of(*broker_, dead));
  EXPECT_TRUE(is_final(state_of(*broker_, stopped)))
      << "a cancelled job that was released stays live forever: "
      << to_string(state_of(*broker_, stopped));
}

// ---------------------------------------------------------------------------------------------
// Unique keys

TEST_P(BrokerConformance, UniqueKeyIsRefusedWhileTheFirstIsQueuedScheduledOrRunning) {
  Job queued = make_job();
  queued.unique_key = "k-queued";
  const std::string queued_id = enqueue(queued);

  Job scheduled = make_job();
  scheduled.unique_key = "k-scheduled";
  scheduled.run_at = now_ms() + 3600 * 1000;
  const std::string scheduled_id = enqueue(scheduled);

  Job running = make_job("t", "run");
  running.unique_key = "k-running";
  const std::string running_id = enqueue(running);
  ASSERT_EQ(reserve_one("run").id, running_id);

  for (const auto& [key, first_id] : std::vector<std::pair<std::string, std::string>>{
           {"k-queued", queued_id}, {"k-scheduled", scheduled_id}, {"k-running", running_id}}) {
    SCOPED_TRACE(key);
    Job dup = make_job("other.task", "other");
    dup.unique_key = key;
    const EnqueueResult r = broker_->enqueue(dup);
    EXPECT_FALSE(r.created);
    EXPECT_EQ(r.id, first_id);
  }
  EXPECT_EQ(list_all().size(), 3u) << "a refused duplicate was stored";
}

TEST_P(BrokerConformance, UniqueKeyIsFreeAgainOnceTheFirstIsFinal) {
  auto with_key = [](const std::string& key, const std::string& queue) {
    Job job = make_job("t", queue);
    job.unique_key = key;
    job.max_attempts = 1;
    return job;
  };
  const std::string succeeded = enqueue(with_key("k-ok", "q"));
  ASSERT_EQ(ack_one(reserve_one("q")), 1u);
  const std::string failed = enqueue(with_key("k-fail", "q"));
  ASSERT_EQ(fail_one(reserve_one("q"), kFailure), 1u);
  const std::string cancelled = enqueue(with_key("k-cancel", "q"));
  ASSERT_EQ(broker_->cancel(cancelled), JobState::kCancelled);

  for (const auto& [key, first_id] : std::vector<std::pair<std::string, std::string>>{
           {"k-ok", succeeded}, {"k-fail", failed}, {"k-cancel", cancelled}}) {
    SCOPED_TRACE(key);
    const EnqueueResult r = broker_->enqueue(with_key(key, "q"));
    EXPECT_TRUE(r.created);
    EXPECT_NE(r.id, first_id);
    // And the new job holds the key in its turn.
    const EnqueueResult dup = broker_->enqueue(with_key(key, "q"));
    EXPECT_FALSE(dup.created);
    EXPECT_EQ(dup.id, r.id);
  }
}

TEST_P(BrokerConformance, DifferentUniqueKeysAndJobsWithoutKeyDoNotConflict) {
  Job a = make_job();
  a.unique_key = "a";
  Job b = make_job();
  b.unique_key = "b";
  EXPECT_TRUE(broker_->enqueue(a).created);
  EXPECT_TRUE(broker_->enqueue(b).created);
  EXPECT_TRUE(broker_->enqueue(make_job()).created);
  EXPECT_TRUE(broker_->enqueue(make_job()).created);
  EXPECT_EQ(list_all().size(), 4u);
}

// ---------------------------------------------------------------------------------------------
// enqueue_many

TEST_P(BrokerConformance, EnqueueManyStoresEveryJobAndAnswersInOrder) {
  std::vector<Job> jobs;
  for (int i = 0; i < 5; ++i) {
    Job job = make_job("batch." + std::to_string(i));
    job.args = cat({"[", std::to_string(i), "]"});
    jobs.push_back(job);
  }
  jobs[2].id = new_job_id();
  const auto results = broker_->enqueue_many(jobs);
  ASSERT_EQ(results.size(), jobs.size());
  EXPECT_EQ(results[2].id, jobs[2].id);
  std::set<std::string> ids;
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_TRUE(results[i].created);
    EXPECT_EQ(results[i].id.size(), 36u);
    ids.insert(results[i].id);
    const Job stored = get_job(*broker_, results[i].id);
    EXPECT_EQ(stored.task, jobs[i].task);
    EXPECT_EQ(stored.args, jobs[i].args);
    EXPECT_EQ(stored.state, JobState::kQueued);
  }
  EXPECT_EQ(ids.size(), jobs.size());
}

TEST_P(BrokerConformance, EnqueueManyHonoursUniqueKeysWithinTheBatch) {
  std::vector<Job> jobs(4, make_job());
  jobs[0].unique_key = "k1";
  jobs[1].unique_key = "k2";
  jobs[2].unique_key = "k1";
  const auto results = broker_->enqueue_many(jobs);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_TRUE(results[0].created);
  EXPECT_TRUE(results[1].created);
  EXPECT_FALSE(results[2].created);
  EXPECT_EQ(results[2].id, results[0].id);
  EXPECT_TRUE(results[3].created);
  EXPECT_EQ(list_all().size(), 3u);
}

TEST_P(BrokerConformance, EnqueueManyHonoursUniqueKeysAgainstStoredJobs) {
  Job stored = make_job();
  stored.unique_key = "live";
  const std::string stored_id = enqueue(stored);
  Job done = make_job("t", "done");
  done.unique_key = "finished";
  enqueue(done);
  ASSERT_EQ(ack_one(reserve_one("done")), 1u);

  std::vector<Job> jobs(3, make_job());
  jobs[0].unique_key = "fresh";
  jobs[1].unique_key = "live";
  jobs[2].unique_key = "finished";
  const auto results = broker_->enqueue_many(jobs);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].created);
  EXPECT_FALSE(results[1].created);
  EXPECT_EQ(results[1].id, stored_id);
  EXPECT_TRUE(results[2].created) << "a final job no longer holds its key";
}

TEST_P(BrokerConformance, EnqueueManyIsAllOrNothingWhenOneJobIsInvalid) {
  const std::vector<std::pair<std::string, std::function<void(Job&)>>> spoilers = {
      {"args object", [](Job& j) { j.args = "{}"; }},
      {"max_attempts 0", [](Job& j) { j.max_attempts = 0; }},
      {"empty task", [](Job& j) { j.task.clear(); }},
  };
  for (const auto& [what, spoil] : spoilers) {
    SCOPED_TRACE(what);
    std::vector<Job> jobs(3, make_job());
    jobs[0].unique_key = "held-by-a-failed-batch";
    spoil(jobs[2]);
    EXPECT_THROW(broker_->enqueue_many(jobs), InvalidPayload);
    EXPECT_TRUE(list_all().empty()) << "part of a refused batch was stored";
    EXPECT_TRUE(broker_->counts().empty());
  }
  Job keyed = make_job();
  keyed.unique_key = "held-by-a-failed-batch";
  EXPECT_TRUE(broker_->enqueue(keyed).created) << "a refused batch still holds a unique key";
}

TEST_P(BrokerConformance, EnqueueManyOfNoJobsStoresNothing) {
  EXPECT_TRUE(broker_->enqueue_many(std::span<const Job>{}).empty());
  EXPECT_TRUE(list_all().empty());
}

// ---------------------------------------------------------------------------------------------
// Validation at the door

TEST_P(BrokerConformance, EnqueueRefusesInvalidJobsWithInvalidPayload) {
  const std::vector<std::pair<std::string, std::function<void(Job&)>>> cases = {
      {"empty task", [](Job& j) { j.task.clear(); }},
      {"empty queue", [](Job& j) { j.queue.clear(); }},
      {"args is an object", [](Job& j) { j.args = "{}"; }},
      {"args is not JSON", [](Job& j) { j.args = "not json"; }},
      {"args is empty text", [](Job& j) { j.args = ""; }},
      {"args is a string", [](Job& j) { j.args = R"("[1]")"; }},
      {"args is truncated", [](Job& j) { j.args = "[1, 2"; }},
      {"kwargs is an array", [](Job& j) { j.kwargs = "[]"; }},
      {"kwargs is not JSON", [](Job& j) { j.kwargs = "not json"; }},
      {"kwargs is null", [](Job& j) { j.kwargs = "null"; }},
      {"max_attempts 0", [](Job& j) { j.max_attempts = 0; }},
      {"max_attempts negative", [](Job& j) { j.max_attempts = -1; }},
  };
  for (const auto& [what, spoil] : cases) {
    SCOPED_TRACE(what);
    Job job = make_job();
    spoil(job);
    EXPECT_THROW(broker_->enqueue(job), InvalidPayload);
    EXPECT_THROW(validate_new_job(job, BrokerOptions{}), InvalidPayload);
    const Job one[] = {job};
    EXPECT_THROW(broker_->enqueue_many(one), InvalidPayload);
  }
  EXPECT_TRUE(list_all().empty());
  EXPECT_TRUE(broker_->counts().empty());
}

TEST_P(BrokerConformance, EnqueueRefusesPayloadOverMaxPayloadBytes) {
  BrokerOptions options;
  options.max_payload_bytes = 1024;
  auto small = store_->open(options);

  Job big_args = make_job();
  big_args.args = cat({"[", json_quote(std::string(2000, 'x')), "]"});
  EXPECT_THROW(small->enqueue(big_args), InvalidPayload);
  Job big_kwargs = make_job();
  big_kwargs.kwargs = cat({R"({"blob":)", json_quote(std::string(2000, 'y')), "}"});
  EXPECT_THROW(small->enqueue(big_kwargs), InvalidPayload);
  EXPECT_TRUE(list_all().empty());

  Job fits = make_job();
  fits.args = cat({"[", json_quote(std::string(200, 'z')), "]"});
  EXPECT_TRUE(small->enqueue(fits).created);
  EXPECT_TRUE(broker_->enqueue(big_args).created) << "the default limit is 1 MiB";
}

// ---------------------------------------------------------------------------------------------
// list, counts

TEST_P(BrokerConformance, ListFiltersByQueueStateAndTask) {
  std::set<std::string> q1_t1, q1_t2, q2_t1, q2_t2;
  for (int i = 0; i < 3; ++i) q1_t1.insert(enqueue(make_job("t1", "q1")));
  for (int i = 0; i < 2; ++i) q1_t2.insert(enqueue(make_job("t2", "q1")));
  for (int i = 0; i < 2; ++i) q2_t1.insert(enqueue(make_job("t1", "q2")));
  Job later = make_job("t2", "q2");
  later.run_at = now_ms() + 3600 * 1000;
  q2_t2.insert(enqueue(later));

  const auto running = reserve({"q1"}, 1);  // takes the oldest of q1: a t1 job
  ASSERT_EQ(running.size(), 1u);
  const Job succeeded = reserve_one("q2");
  ASSERT_EQ(ack_one(succeeded, "42"), 1u);

  auto list = [&](std::optional<std::string> queue, std::optional<JobState> state,
                  std::optional<std::string> task) {
    ListParams params;
    params.queue = std::move(queue);
    params.state = state;
    params.task = std::move(task);
    const auto jobs = list_all(params);
    for (const Job& job : jobs) {
      if (params.queue) {
        EXPECT_EQ(job.queue, *params.queue);
      }
      if (params.state) {
        EXPECT_EQ(job.state, *params.state);
      }
      if (params.task) {
        EXPECT_EQ(job.task, *params.task);
      }
    }
    return ids_of(jobs);
  };
  auto join = [](std::initializer_list<std::set<std::string>> sets) {
    std::set<std::string> out;
    for (const auto& s : sets) out.insert(s.begin(), s.end());
    return out;
  };

  EXPECT_EQ(list({}, {}, {}), join({q1_t1, q1_t2, q2_t1, q2_t2}));
  EXPECT_EQ(list("q1", {}, {}), join({q1_t1, q1_t2}));
  EXPECT_EQ(list({}, {}, "t2"), join({q1_t2, q2_t2}));
  EXPECT_EQ(list("q1", {}, "t2"), q1_t2);
  EXPECT_EQ(list({}, JobState::kRunning, {}), ids_of(running));
  EXPECT_EQ(list({}, JobState::kSucceeded, {}), std::set<std::string>{succeeded.id});
  EXPECT_EQ(list({}, JobState::kScheduled, {}), q2_t2);
  EXPECT_EQ(list("q1", JobState::kQueued, "t1").size(), 2u);
  EXPECT_EQ(list("q2", JobState::kQueued, {}).size(), 1u);
  EXPECT_TRUE(list("nosuch", {}, {}).empty());
  EXPECT_TRUE(list({}, JobState::kFailed, {}).empty());
  EXPECT_TRUE(list({}, {}, "nosuch").empty());

  ListParams succeeded_only;
  succeeded_only.state = JobState::kSucceeded;
  const auto done = list_all(succeeded_only);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done.front().result, std::optional<std::string>("42"));
}

TEST_P(BrokerConformance, ListPagesWithLimitAndOffset) {
  std::set<std::string> all;
  for (int i = 0; i < 7; ++i) all.insert(enqueue(make_job()));
  std::vector<std::string> seen;
  for (std::size_t offset = 0; offset < 9; offset += 3) {
    ListParams page;
    page.limit = 3;
    page.offset = offset;
    const auto jobs = broker_->list(page);
    EXPECT_EQ(jobs.size(), offset < 6 ? 3u : 1u) << "offset " << offset;
    for (const Job& job : jobs) seen.push_back(job.id);
  }
  EXPECT_EQ(seen.size(), all.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), all) << "pages overlap or miss jobs";
  ListParams past_end;
  past_end.offset = 7;
  EXPECT_TRUE(broker_->list(past_end).empty());
  ListParams one;
  one.limit = 1;
  EXPECT_EQ(broker_->list(one).size(), 1u);
}

TEST_P(BrokerConformance, CountsReportJobsPerQueueAndState) {
  EXPECT_TRUE(broker_->counts().empty());
  enqueue(make_job("t", "q1"));
  enqueue(make_job("t", "q1"));
  enqueue(make_job("t", "q1"));
  reserve_one("q1");
  Job later = make_job("t", "q2");
  later.run_at = now_ms() + 3600 * 1000;
  enqueue(later);
  Job once = make_job("t", "q2");
  once.max_attempts = 1;
  enqueue(once);
  ASSERT_EQ(fail_one(reserve_one("q2"), kFailure), 1u);

  auto counts = broker_->counts();
  auto key = [](const QueueCount& c) { return std::make_tuple(c.queue, c.state); };
  std::sort(counts.begin(), counts.end(),
            [&](const QueueCount& a, const QueueCount& b) { return key(a) < key(b); });
  const std::vector<QueueCount> expected = {
      {"q1", JobState::kQueued, 2},
      {"q1", JobState::kRunning, 1},
      {"q2", JobState::kScheduled, 1},
      {"q2", JobState::kFailed, 1},
  };
  EXPECT_EQ(counts, expected);
}

// ---------------------------------------------------------------------------------------------
// Maintenance: recover_expired, prune_finished, purge

TEST_P(BrokerConformance, RecoverExpiredRequeuesLeasesWithAttemptsLeftAndFailsTheLast) {
  Job retryable = make_job("t", "a");
  retryable.max_attempts = 3;
  const std::string a = enqueue(retryable);
  Job last = make_job("t", "b");
  last.max_attempts = 1;
  const std::string b = enqueue(last);
  const std::string c = enqueue(make_job("t", "c"));

  const Job a_run = reserve_one("a", 50ms);
  const Job b_run = reserve_one("b", 50ms);
  const Job c_run = reserve_one("c", 60s);

  RecoverReport total;
  ASSERT_TRUE(wait_until(
      [&] {
        const RecoverReport r = broker_->recover_expired();
        total.requeued += r.requeued;
        total.failed += r.failed;
        return total.requeued + total.failed >= 2;
      },
      10s));
  EXPECT_EQ(total.requeued, 1u);
  EXPECT_EQ(total.failed, 1u);

  EXPECT_EQ(state_of(*broker_, a), JobState::kQueued);
  const Job b_failed = get_job(*broker_, b);
  EXPECT_EQ(b_failed.state, JobState::kFailed);
  EXPECT_GT(b_failed.finished_at, 0);
  ASSERT_TRUE(b_failed.error.has_value()) << "a job failed by the rescuer must say why";
  EXPECT_FALSE(b_failed.error->type.empty());
  EXPECT_EQ(state_of(*broker_, c), JobState::kRunning) << "a live lease was recovered";

  EXPECT_EQ(ack_one(a_run), 0u);
  EXPECT_EQ(ack_one(b_run), 0u);
  EXPECT_EQ(get_job(*broker_, b), b_failed);
  const Job a_again = reserve_one("a");
  EXPECT_EQ(a_again.attempt, 2);
  EXPECT_EQ(ack_one(a_again), 1u);
  EXPECT_EQ(ack_one(c_run), 1u);

  const RecoverReport none = broker_->recover_expired();
  EXPECT_EQ(none.requeued + none.failed, 0u);
}

TEST_P(BrokerConformance, PruneFinishedRemovesFinalJobsOlderThanResultTtl) {
  BrokerOptions options;
  options.result_ttl = 1ms;
  auto pruner = store_->open(options);

  const std::string succeeded = enqueue(make_job("t", "done"));
  ASSERT_EQ(ack_one(reserve_one("done")), 1u);
  Job once = make_job("t", "done");
  once.max_attempts = 1;
  const std::string failed = enqueue(once);
  ASSERT_EQ(fail_one(reserve_one("done"), kFailure), 1u);
  const std::string cancelled = enqueue(make_job("t", "done"));
  ASSERT_EQ(broker_->cancel(cancelled), JobState::kCancelled);

  const std::string queued = enqueue(make_job("t", "live"));
  Job later = make_job("t", "live");
  later.run_at = now_ms() + 3600 * 1000;
  const std::string scheduled = enqueue(later);
  const std::string running = enqueue(make_job("t", "run"));
  const Job running_job = reserve_one("run");

  std::size_t pruned = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        pruned += pruner->prune_finished();
        return pruned >= 3;
      },
      5s));
  EXPECT_EQ(pruned, 3u);
  for (const auto& id : {succeeded, failed, cancelled}) {
    EXPECT_FALSE(broker_->get(id).has_value()) << id << " was not pruned";
  }
  EXPECT_THROW(broker_->cancel(succeeded), JobNotFound);
  for (const auto& id : {queued, scheduled, running}) {
    EXPECT_TRUE(broker_->get(id).has_value()) << "live job " << id << " was pruned";
  }
  EXPECT_EQ(pruner->prune_finished(), 0u);
  EXPECT_EQ(ack_one(running_job), 1u);
}

TEST_P(BrokerConformance, PruneFinishedKeepsFinalJobsYoungerThanResultTtl) {
  const std::string id = enqueue(make_job());
  ASSERT_EQ(ack_one(reserve_one(), "1"), 1u);
  EXPECT_EQ(broker_->prune_finished(), 0u);  // default result_ttl is 24 hours
  EXPECT_EQ(get_job(*broker_, id).result, std::optional<std::string>("1"));
}

TEST_P(BrokerConformance, PurgeDeletesEveryJobOfAQueueExceptRunningOnes) {
  const std::string running = enqueue(make_job("t", "q1"));
  const Job running_job = reserve_one("q1");
  ASSERT_EQ(running_job.id, running);
  enqueue(make_job("t", "q1"));
  ASSERT_EQ(ack_one(reserve_one("q1")), 1u);  // succeeded
  Job once = make_job("t", "q1");
  once.max_attempts = 1;
  enqueue(once);
  ASSERT_EQ(fail_one(reserve_one("q1"), kFailure), 1u);  // failed
  Job later = make_job("t", "q1");
  later.run_at = now_ms() + 3600 * 1000;
  enqueue(later);                // scheduled
  enqueue(make_job("t", "q1"));  // queued
  const std::string other = enqueue(make_job("t", "q2"));

  EXPECT_EQ(broker_->purge("q1"), 4u) << "succeeded, failed, scheduled and queued";
  ListParams q1;
  q1.queue = "q1";
  EXPECT_EQ(ids_of(list_all(q1)), std::set<std::string>{running});
  EXPECT_EQ(state_of(*broker_, other), JobState::kQueued) << "purge touched another queue";
  EXPECT_EQ(ack_one(running_job), 1u) << "the running job must still be owned after a purge";
}

TEST_P(BrokerConformance, PurgeOfAnEmptyQueueNameDeletesEveryQueue) {
  enqueue(make_job("t", "q1"));
  enqueue(make_job("t", "q2"));
  enqueue(make_job("t", "q3"));
  const Job running = reserve_one("q3");
  enqueue(make_job("t", "q3"));
  EXPECT_EQ(broker_->purge(""), 3u);
  EXPECT_EQ(ids_of(list_all()), std::set<std::string>{running.id});
  EXPECT_EQ(broker_->purge(""), 0u);
}

// ---------------------------------------------------------------------------------------------
// wait_for_jobs

TEST_P(BrokerConformance, WaitForJobsReturnsPromptlyAfterAnEnqueueFromAnotherThread) {
  std::atomic<bool> started{false};
  std::atomic<bool> returned{false};
  std::stop_source cleanup;  // only to unblock the waiter if the broker never wakes it
  const auto t0 = std::chrono::steady_clock::now();
  std::jthread waiter([&] {
    const std::vector<std::string> queues = {"w"};
    started = true;
    broker_->wait_for_jobs(queues, 30s, cleanup.get_token());
    returned = true;
  });
  ASSERT_TRUE(wait_until([&] { return started.load(); }, 5s));
  // The waiter may not be blocked yet when the first job lands, so keep enqueueing until it
  // notices: each enqueue must wake a waiter that is blocked by then.
  const bool woke = wait_until(
      [&] {
        if (returned) return true;
        broker_->enqueue(make_job("t", "w"));
        return returned.load();
      },
      5s, 50ms);
  EXPECT_TRUE(woke) << "wait_for_jobs did not return after enqueues into its queue";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  cleanup.request_stop();
}

TEST_P(BrokerConformance, WaitForJobsReturnsWhenStopIsRequested) {
  std::stop_source stop;
  std::atomic<bool> started{false};
  std::atomic<bool> returned{false};
  std::jthread waiter([&] {
    const std::vector<std::string> queues = {"idle"};
    started = true;
    broker_->wait_for_jobs(queues, 30s, stop.get_token());
    returned = true;
  });
  ASSERT_TRUE(wait_until([&] { return started.load(); }, 5s));
  stop.request_stop();
  EXPECT_TRUE(wait_until([&] { return returned.load(); }, 5s))
      << "wait_for_jobs ignored its stop token";

  // A token requested before the call returns at once.
  const std::vector<std::string> queues = {"idle"};
  const auto t0 = std::chrono::steady_clock::now();
  broker_->wait_for_jobs(queues, 20s, stop.get_token());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST_P(BrokerConformance, WaitForJobsReturnsAfterMaxWait) {
  const std::vector<std::string> queues = {"idle"};
  const auto t0 = std::chrono::steady_clock::now();
  broker_->wait_for_jobs(queues, 100ms, std::stop_token{});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

// ---------------------------------------------------------------------------------------------
// Concurrency: many reservers, no job delivered twice, none lost

struct DrainResult {
  std::vector<std::string> ids;
  std::string error;
};

// drain reserves from `queue` in random batches of 1..32 and acks each batch (result: the
// reserver's label as a JSON string) until the queue is empty. Between reserve and ack it
// "works" for a moment, as a real worker does, which also lets the other reservers take turns
// at the store's write lock instead of one of them draining everything alone.
DrainResult drain(Broker& broker, const std::string& queue, const std::string& label,
                  unsigned seed) {
  DrainResult out;
  try {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> batch(1, 32);
    ReserveParams params;
    params.queues = {queue};
    params.lease = 120s;
    params.worker_id = label;
    while (true) {
      params.max_jobs = batch(rng);
      const auto jobs = broker.reserve(params);
      if (jobs.empty()) break;
      if (jobs.size() > params.max_jobs) {
        out.error = "reserve returned " + std::to_string(jobs.size()) + " jobs for max_jobs " +
                    std::to_string(params.max_jobs);
        break;
      }
      std::vector<Ack> acks;
      for (const Job& job : jobs) {
        out.ids.push_back(job.id);
        acks.push_back({{job.id, job.lease_token}, json_quote(label)});
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));  // the work, not a sync
      const std::size_t acked = broker.ack(acks);
      if (acked != acks.size()) {
        out.error = "ack applied to " + std::to_string(acked) + " of " +
                    std::to_string(acks.size()) + " fresh deliveries";
        break;
      }
    }
  } catch (const std::exception& e) {
    out.error = std::string("exception: ") + e.what();
  }
  return out;
}

// Checks that `by_reserver` partitions `all`, that every job succeeded once, acked by the
// reserver that listed it, and that at least `min_active` reservers took part.
void expect_partition(
    Broker& broker, const std::set<std::string>& all,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& by_reserver,
    std::size_t min_active) {
  std::map<std::string, std::string> owner;
  std::size_t delivered = 0;
  std::size_t active = 0;
  for (const auto& [label, ids] : by_reserver) {
    if (!ids.empty()) ++active;
    delivered += ids.size();
    for (const auto& id : ids) {
      const auto [it, fresh] = owner.emplace(id, label);
      EXPECT_TRUE(fresh) << "job " << id << " was delivered to " << it->second << " and " << label;
    }
  }
  EXPECT_GE(active, min_active)
      << "too few reservers got jobs: the test did not exercise concurrent reservation";
  EXPECT_EQ(delivered, all.size()) << "deliveries";
  std::set<std::string> got;
  for (const auto& [id, label] : owner) got.insert(id);
  std::vector<std::string> lost;
  std::set_difference(all.begin(), all.end(), got.begin(), got.end(), std::back_inserter(lost));
  EXPECT_TRUE(lost.empty()) << lost.size() << " jobs were never delivered, e.g. "
                            << (lost.empty() ? "" : lost.front());
  std::vector<std::string> unknown;
  std::set_difference(got.begin(), got.end(), all.begin(), all.end(), std::back_inserter(unknown));
  EXPECT_TRUE(unknown.empty()) << "delivered ids that were never enqueued";

  std::size_t wrong = 0;
  for (const auto& [id, label] : owner) {
    const auto job = broker.get(id);
    if (!job || job->state != JobState::kSucceeded || job->attempt != 1 ||
        job->result != json_quote(label)) {
      if (++wrong <= 3) {
        ADD_FAILURE() << "job " << id << " is not succeeded once by " << label << ": "
                      << (job ? to_json(*job) : std::string("missing"));
      }
    }
  }
  EXPECT_EQ(wrong, 0u);
}

// A worker's heartbeat extends every lease it holds while its acks end some of the same
// deliveries, at the same moment and in whatever order each lists them. Neither may fail (a
// store that locks rows one by one must not deadlock them), and every job ends acked once.
TEST_P(BrokerConformance, HeartbeatsAndAcksOfTheSameLeasesAtOnceNeverFail) {
  constexpr int kJobs = 400;
  constexpr std::size_t kAckBatch = 20;
  std::vector<Job> jobs(kJobs, make_job("overlap.job", "overlap"));
  broker_->enqueue_many(jobs);
  const std::vector<Job> held = reserve({"overlap"}, kJobs);
  ASSERT_EQ(held.size(), static_cast<std::size_t>(kJobs));
  std::vector<LeaseRef> leases;
  for (const Job& job : held) leases.push_back(lease_of(job));

  std::atomic<bool> acking{true};
  std::string heartbeat_error;
  std::size_t heartbeats = 0;
  std::thread heartbeat([&] {
    std::vector<LeaseRef> order = leases;
    std::mt19937 rng(7);
    try {
      while (acking.load() || heartbeats < 3) {
        std::shuffle(order.begin(), order.end(), rng);
        broker_->extend(order, 30s);
        ++heartbeats;
      }
    } catch (const std::exception& e) {
      heartbeat_error = e.what();
    }
  });
  std::vector<Ack> acks;
  for (const LeaseRef& lease : leases) acks.push_back({lease, "1"});
  std::shuffle(acks.begin(), acks.end(), std::mt19937(11));
  std::size_t acked = 0;
  std::string ack_error;
  try {
    for (std::size_t i = 0; i < acks.size(); i += kAckBatch) {
      const std::size_t n = std::min(kAckBatch, acks.size() - i);
      acked += broker_->ack(std::span<const Ack>(acks).subspan(i, n));
    }
  } catch (const std::exception& e) {
    ack_error = e.what();
  }
  acking.store(false);
  heartbeat.join();
  EXPECT_EQ(heartbeat_error, "");
  EXPECT_EQ(ack_error, "");
  EXPECT_EQ(acked, static_cast<std::size_t>(kJobs));
  ListParams succeeded;
  succeeded.state = JobState::kSucceeded;
  EXPECT_EQ(list_all(succeeded).size(), static_cast<std::size_t>(kJobs));
}

TEST_P(BrokerConformance, TwoProcessesReserveConcurrentlyWithoutDuplicatesOrLoss) {
  constexpr int kJobs = 2000;
  std::vector<Job> jobs;
  for (int i = 0; i < kJobs; ++i) {
    Job job = make_job("race.job", "race");
    job.args = cat({"[", std::to_string(i), "]"});
    jobs.push_back(std::move(job));
  }
  std::set<std::string> all;
  for (const auto& r : broker_->enqueue_many(jobs)) all.insert(r.id);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kJobs));

  TempDir out_dir;
  int start_pipe[2];
  ASSERT_EQ(pipe(start_pipe), 0);
  std::vector<pid_t> children;
  std::vector<std::string> labels;
  for (int c = 0; c < 2; ++c) {
    const std::string label = "child-" + std::to_string(c);
    const std::string out_path = out_dir.path() + "/" + label;
    labels.push_back(label);
    const pid_t pid = fork();
    if (pid == 0) {
      // Child: never touch the parent's broker or gtest; open our own instance, wait for the
      // start signal so both children race, drain, report through a file, and _exit.
      close(start_pipe[1]);
      int code = 0;
      {
        DrainResult result;
        try {
          auto own = store_->open();
          char go = 0;
          if (read(start_pipe[0], &go, 1) != 1) {
            result.error = "no start signal";
          } else {
            result = drain(*own, "race", label, static_cast<unsigned>(1000 + c));
          }
        } catch (const std::exception& e) {
          result.error = std::string("opening the broker: ") + e.what();
        }
        std::ofstream out(out_path);
        for (const auto& id : result.ids) out << id << '\n';
        if (!result.error.empty()) out << "ERROR " << result.error << '\n';
        out.close();
        code = !out ? 3 : (result.error.empty() ? 0 : 2);
      }
      _exit(code);
    }
    ASSERT_GT(pid, 0) << "fork failed";
    children.push_back(pid);
  }
  close(start_pipe[0]);
  const char go[2] = {'g', 'g'};
  EXPECT_EQ(write(start_pipe[1], go, 2), 2);
  close(start_pipe[1]);

  for (const pid_t pid : children) {
    int status = 0;
    const bool exited =
        wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 180s, 10ms);
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "child " << pid << " did not finish within 180 s";
      continue;
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "child " << pid << " ended with status " << status;
  }

  std::vector<std::pair<std::string, std::vector<std::string>>> by_child;
  for (const auto& label : labels) {
    std::ifstream in(out_dir.path() + "/" + label);
    std::vector<std::string> ids;
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("ERROR ", 0) == 0) {
        ADD_FAILURE() << label << ": " << line;
      } else if (!line.empty()) {
        ids.push_back(line);
      }
    }
    std::cout << "[          ] " << label << " reserved " << ids.size() << " jobs\n";
    by_child.emplace_back(label, std::move(ids));
  }
  expect_partition(*broker_, all, by_child, 2);
  EXPECT_EQ(count_in(*broker_, JobState::kSucceeded, "race"), kJobs);
  EXPECT_EQ(count_in(*broker_, JobState::kQueued, "race"), 0);
  EXPECT_EQ(count_in(*broker_, JobState::kRunning, "race"), 0);
}

TEST_P(BrokerConformance, ThreadsReserveConcurrentlyWithoutDuplicatesOrLoss) {
  constexpr int kJobs = 1000;
  std::vector<Job> jobs(kJobs, make_job("race.job", "race"));
  std::set<std::string> all;
  for (const auto& r : broker_->enqueue_many(jobs)) all.insert(r.id);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kJobs));

  // Two threads share this test's broker (brokers are safe to share between threads), two share
  // a second instance onto the same store.
  auto second = store_->open();
  constexpr int kThreads = 4;
  std::vector<DrainResult> results(kThreads);
  std::atomic<int> ready{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        Broker& broker = t % 2 == 0 ? *broker_ : *second;
        ++ready;
        while (ready.load() < kThreads) std::this_thread::yield();
        results[static_cast<std::size_t>(t)] =
            drain(broker, "race", "thread-" + std::to_string(t), static_cast<unsigned>(t));
      });
    }
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> by_thread;
  for (int t = 0; t < kThreads; ++t) {
    auto& r = results[static_cast<std::size_t>(t)];
    EXPECT_TRUE(r.error.empty()) << "thread-" << t << ": " << r.error;
    by_thread.emplace_back("thread-" + std::to_string(t), std::move(r.ids));
  }
  // SQLite gives no fairness between connections (a waiting connection backs off in its busy
  // handler), so only require that several threads took part, not all of them.
  expect_partition(*broker_, all, by_thread, 2);
  EXPECT_EQ(count_in(*broker_, JobState::kSucceeded, "race"), kJobs);
}

// ---------------------------------------------------------------------------------------------
// open_broker: URL parsing and unopenable stores (SQLite URLs; other kinds add their own)

TEST(OpenBroker, RefusesMalformedUrlsWithConfigError) {
  for (const char* url : {"", "sqlite://x.db", "nosuch://", "nosuch:///x.db", "jobs.db",
                          "sqlite:", "sqlite:///", "://x.db"}) {
    SCOPED_TRACE(url);
    EXPECT_THROW(open_broker(url), ConfigError);
  }
}

TEST(OpenBroker, RefusesUnknownOrMalformedQueryParametersWithConfigError) {
  TempDir dir;
  const std::string base = sqlite_url(dir.path());
  for (const char* query : {"?nosuch=1", "?max_payload_bytes=abc", "?result_ttl_s=-5"}) {
    SCOPED_TRACE(query);
    EXPECT_THROW(open_broker(base + query), ConfigError);
  }
}

TEST(OpenBroker, ReportsAnUnopenableStoreAsBrokerUnavailable) {
  TempDir dir;
  const std::string plain_file = dir.path() + "/plain-file";
  std::ofstream(plain_file) << "not a directory";
  // A path under a regular file cannot be created, even by root.
  EXPECT_THROW(open_broker("sqlite:///" + plain_file + "/jobs.db"), BrokerUnavailable);
}

TEST(OpenBroker, ReportsAFileThatIsNotADatabaseAsBrokerUnavailable) {
  TempDir dir;
  const std::string garbage = dir.path() + "/garbage.db";
  std::ofstream(garbage) << std::string(8192, '\x7f');
  EXPECT_THROW(
      {
        auto broker = open_broker("sqlite:///" + garbage);
        broker->enqueue(make_job());
      },
      BrokerUnavailable);
}

TEST(OpenBroker, OpensAnAbsoluteSqlitePathAndKeepsItsUrl) {
  TempDir dir;
  const std::string url = sqlite_url(dir.path());
  auto broker = open_broker(url);
  EXPECT_EQ(broker->kind(), "sqlite");
  EXPECT_EQ(broker->url(), url);
  EXPECT_TRUE(broker->enqueue(make_job()).created);
}

TEST(OpenBroker, UrlQueryParametersOverrideOptions) {
  TempDir dir;
  BrokerOptions generous;
  generous.max_payload_bytes = 1 << 20;
  auto broker = open_broker(sqlite_url(dir.path()) + "?max_payload_bytes=64", generous);
  Job big = make_job();
  big.args = cat({"[", json_quote(std::string(100, 'x')), "]"});
  EXPECT_THROW(broker->enqueue(big), InvalidPayload);
  EXPECT_TRUE(broker->enqueue(make_job()).created);

  auto short_ttl = open_broker(sqlite_url(dir.path()) + "?result_ttl_s=0");
  const std::string id = short_ttl->enqueue(make_job("t", "ttl")).id;
  ReserveParams params;
  params.queues = {"ttl"};
  const auto jobs = short_ttl->reserve(params);
  ASSERT_EQ(jobs.size(), 1u);
  const Ack acks[] = {{{jobs[0].id, jobs[0].lease_token}, "null"}};
  ASSERT_EQ(short_ttl->ack(acks), 1u);
  std::size_t pruned = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        pruned += short_ttl->prune_finished();
        return pruned >= 1;
      },
      5s));
  EXPECT_FALSE(short_ttl->get(id).has_value());
}

}  // namespace
