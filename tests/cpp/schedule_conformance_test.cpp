// The schedule part of the broker conformance suite: enqueue_tick enqueues each tick of a
// schedule exactly once, however many schedulers (threads here, processes in the Python suite)
// offer it, and records state and history that prune_schedule_history trims. Runs against every
// factory in broker_factories(), as broker_conformance_test.cpp does.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "broker_factories.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/scheduler.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

class ScheduleConformance : public ::testing::TestWithParam<BrokerFactory> {
 protected:
  void SetUp() override {
    store_ = GetParam().make_store();
    broker_ = store_->open();
  }
  void TearDown() override {
    broker_.reset();
    store_.reset();
  }

  static TickEnqueue offer(const std::string& schedule, EpochMs tick) {
    TickEnqueue t;
    t.schedule = schedule;
    t.tick = tick;
    t.next_tick = tick + 1000;
    t.job = make_job("sched.task", "sched");
    t.job.run_at = tick;
    t.job.unique_key = tick_unique_key(schedule, tick);
    return t;
  }

  static ListParams sched_queue() {
    ListParams params;
    params.queue = "sched";
    params.limit = 1000;
    return params;
  }

  std::unique_ptr<BrokerStore> store_;
  std::shared_ptr<Broker> broker_;
};

INSTANTIATE_TEST_SUITE_P(AllBrokers, ScheduleConformance, ::testing::ValuesIn(broker_factories()),
                         [](const auto& info) { return info.param.name; });

TEST_P(ScheduleConformance, EnqueueTickEnqueuesAndRecordsTheTick) {
  EXPECT_FALSE(broker_->schedule_state("nightly").has_value());
  const TickResult r = broker_->enqueue_tick(offer("nightly", 5000));
  ASSERT_TRUE(r.enqueued);
  EXPECT_EQ(r.last_tick, 5000);
  const auto job = broker_->get(r.job_id);
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->task, "sched.task");
  EXPECT_EQ(job->run_at, 5000);
  EXPECT_EQ(job->unique_key, tick_unique_key("nightly", 5000));
  const auto state = broker_->schedule_state("nightly");
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(*state, (ScheduleState{"nightly", 5000, 6000, r.job_id}));
  const auto history = broker_->schedule_history("nightly", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].tick, 5000);
  EXPECT_EQ(history[0].job_id, r.job_id);
  EXPECT_GT(history[0].enqueued_at, 0);
}

TEST_P(ScheduleConformance, ATickAtOrBeforeTheLastRecordedOneIsNotEnqueuedAgain) {
  const TickResult first = broker_->enqueue_tick(offer("s", 2000));
  ASSERT_TRUE(first.enqueued);
  // The first tick's job finishing frees its unique key: the recorded tick must still hold.
  const auto jobs = broker_->reserve(ReserveParams{{"sched"}, 1, 30s, "t"});
  ASSERT_EQ(jobs.size(), 1u);
  const Ack acks[] = {{{jobs[0].id, jobs[0].lease_token}, "null"}};
  ASSERT_EQ(broker_->ack(acks), 1u);

  const TickResult again = broker_->enqueue_tick(offer("s", 2000));
  EXPECT_FALSE(again.enqueued);
  EXPECT_EQ(again.last_tick, 2000);
  EXPECT_EQ(again.job_id, first.job_id);
  const TickResult older = broker_->enqueue_tick(offer("s", 1000));
  EXPECT_FALSE(older.enqueued);
  EXPECT_EQ(older.last_tick, 2000);
  const TickResult later = broker_->enqueue_tick(offer("s", 3000));
  EXPECT_TRUE(later.enqueued);
  EXPECT_EQ(broker_->list(sched_queue()).size(), 2u);
}

TEST_P(ScheduleConformance, ALiveJobHoldingTheTicksKeyRunsTheTick) {
  Job by_hand = make_job("sched.task", "sched");
  by_hand.unique_key = tick_unique_key("held", 7000);
  const std::string holder = broker_->enqueue(by_hand).id;
  const TickResult r = broker_->enqueue_tick(offer("held", 7000));
  EXPECT_TRUE(r.enqueued);  // the tick is recorded: no scheduler offers it again
  EXPECT_EQ(r.job_id, holder);
  EXPECT_EQ(broker_->schedule_state("held")->last_job_id, holder);
  EXPECT_EQ(broker_->schedule_history("held", 10).at(0).job_id, holder);
  EXPECT_EQ(broker_->list(sched_queue()).size(), 1u);
}

TEST_P(ScheduleConformance, SchedulesAreIndependent) {
  ASSERT_TRUE(broker_->enqueue_tick(offer("a", 1000)).enqueued);
  ASSERT_TRUE(broker_->enqueue_tick(offer("b", 1000)).enqueued);
  const auto states = broker_->schedule_states();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].name, "a");
  EXPECT_EQ(states[1].name, "b");
}

TEST_P(ScheduleConformance, ConcurrentOffersOfEachTickEnqueueItOnce) {
  constexpr int kThreads = 4;
  constexpr EpochMs kTicks = 30;
  std::vector<std::shared_ptr<Broker>> brokers;
  for (int i = 0; i < kThreads; ++i) brokers.push_back(store_->open());
  std::atomic<int> enqueued{0};
  std::vector<std::jthread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (EpochMs tick = 1; tick <= kTicks; ++tick) {
        if (brokers[static_cast<std::size_t>(i)]
                ->enqueue_tick(offer("race", tick * 1000))
                .enqueued) {
          ++enqueued;
        }
      }
    });
  }
  threads.clear();
  EXPECT_EQ(enqueued.load(), kTicks);
  std::set<std::string> keys;
  for (const Job& job : broker_->list(sched_queue())) {
    EXPECT_TRUE(keys.insert(*job.unique_key).second) << "tick enqueued twice: " << *job.unique_key;
  }
  EXPECT_EQ(keys.size(), static_cast<std::size_t>(kTicks));
  EXPECT_EQ(broker_->schedule_history("race", 1000).size(), static_cast<std::size_t>(kTicks));
}

TEST_P(ScheduleConformance, PruneScheduleHistoryDeletesOnlyOlderTicks) {
  for (EpochMs tick : {1000, 2000, 3000})
    ASSERT_TRUE(broker_->enqueue_tick(offer("p", tick)).enqueued);
  EXPECT_EQ(broker_->prune_schedule_history(2500), 2u);
  const auto history = broker_->schedule_history("p", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].tick, 3000);
  // The state survives the pruning of its history.
  EXPECT_EQ(broker_->schedule_state("p")->last_tick, 3000);
}

TEST_P(ScheduleConformance, SchedulersOverOneBrokerEnqueueEachDueTickOnce) {
  std::vector<Schedule> schedules(1);
  schedules[0].name = "every-second";
  schedules[0].task = "sched.task";
  schedules[0].timing = ScheduleTiming::every(1s);
  SchedulerOptions options;
  options.prune_every = 0ms;
  Scheduler a(store_->open(), schedules, options);
  Scheduler b(store_->open(), schedules, options);
  const EpochMs base = 1'000'000;
  // Both start before the first tick; each later offers the same due ticks.
  a.run_due(base);
  b.run_due(base);
  std::size_t total = 0;
  for (EpochMs now = base + 500; now <= base + 10'500; now += 700) {
    total += a.run_due(now).size();
    total += b.run_due(now).size();
  }
  EXPECT_EQ(total, 10u);  // ticks base+1000 .. base+10000, each by one of the two
  EXPECT_EQ(broker_->schedule_state("every-second")->last_tick, base + 10'000);
}

}  // namespace

namespace {

TEST(SchedulerOnce, AOneOffInstantRunsOnceEvenWhenNoSchedulerRanAtIt) {
  auto store = broker_factories().front().make_store();
  std::vector<Schedule> schedules(1);
  schedules[0].name = "once";
  schedules[0].task = "sched.task";
  schedules[0].timing = ScheduleTiming::once(50'000);
  SchedulerOptions options;
  options.prune_every = 0ms;
  Scheduler late(store->open(), schedules, options);
  ASSERT_EQ(late.run_due(60'000).size(), 1u);
  EXPECT_EQ(late.run_due(70'000).size(), 0u);
  Scheduler again(store->open(), schedules, options);
  EXPECT_EQ(again.run_due(80'000).size(), 0u);
  // With a grace shorter than the delay, the missed instant is dropped.
  schedules[0].name = "once-graced";
  schedules[0].misfire.grace = 1s;
  Scheduler graced(store->open(), schedules, options);
  EXPECT_EQ(graced.run_due(60'000).size(), 0u);
}

TEST(SchedulerThread, EnqueuesTicksUntilStoppedAndRefusesRunDueMeanwhile) {
  auto store = broker_factories().front().make_store();
  auto broker = store->open();
  std::vector<Schedule> schedules(1);
  schedules[0].name = "fast";
  schedules[0].task = "sched.task";
  schedules[0].timing = ScheduleTiming::every(100ms);
  SchedulerOptions options;
  options.prune_every = 0ms;
  Scheduler scheduler(broker, schedules, options);
  scheduler.stop();  // safe before start
  scheduler.start();
  scheduler.start();  // a no-op
  EXPECT_THROW(scheduler.run_due(now_ms()), ConfigError);
  ASSERT_TRUE(wait_until([&] { return broker->schedule_history("fast", 10).size() >= 3; }, 10s));
  scheduler.stop();
  scheduler.stop();  // safe twice
  EXPECT_FALSE(scheduler.running());
  EXPECT_EQ(scheduler.last_error(), "");
  const auto after_stop = broker->schedule_history("fast", 1000).size();
  EXPECT_EQ(scheduler.run_due(0).size(), 0u);  // nothing is due before the recorded tick
  EXPECT_EQ(broker->schedule_history("fast", 1000).size(), after_stop);
}

}  // namespace
