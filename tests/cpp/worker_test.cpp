// Worker tests: the C++ Worker running native handlers against the SQLite broker. Tests
// synchronise on gates, atomics and broker state polled with a deadline; handlers that must stay
// busy wait on a Gate that also honours their job's token, so no test can hang a worker.
#include "cinejobs/worker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job.hpp"
#include "cinejobs/job_context.hpp"
#include "cinejobs/json_text.hpp"
#include "delegating_broker.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { broker_ = open_broker(sqlite_url(dir_.path())); }

  // options: small leases and fast heartbeats so tests finish in milliseconds.
  static WorkerOptions options(int concurrency = 4) {
    WorkerOptions o;
    o.queues = {"default"};
    o.concurrency = concurrency;
    o.lease = 5s;
    o.heartbeat = 50ms;
    o.poll_interval = 10ms;
    o.grace = 5s;
    o.maintenance_interval = 100ms;
    o.worker_id = "worker-test";
    return o;
  }

  std::string enqueue(Job job) {
    const EnqueueResult r = broker_->enqueue(job);
    EXPECT_TRUE(r.created);
    return r.id;
  }

  // wait_state polls the broker until the job reads `state`.
  bool wait_state(const std::string& id, JobState state, std::chrono::milliseconds timeout = 10s) {
    return wait_until(
        [&] {
          const auto job = broker_->get(id);
          return job && job->state == state;
        },
        timeout);
  }

  // wait_final polls until the job is final and returns it.
  Job wait_final(const std::string& id, std::chrono::milliseconds timeout = 10s) {
    std::optional<Job> job;
    const bool done = wait_until(
        [&] {
          job = broker_->get(id);
          return job && is_final(job->state);
        },
        timeout);
    if (!done) {
      throw std::runtime_error("job " + id + " is not final after the deadline: " +
                               (job ? to_json(*job) : std::string("missing")));
    }
    return *job;
  }

  std::int64_t running_in_broker(const std::optional<std::string>& queue = std::nullopt) {
    return count_in(*broker_, JobState::kRunning, queue);
  }

  TempDir dir_;
  std::shared_ptr<Broker> broker_;
};

// sleep_for_work simulates a handler's work for `d`, stopping early when the token is set.
void work_for(const JobContext& ctx, std::chrono::milliseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until && !ctx.cancel_requested()) std::this_thread::sleep_for(2ms);
}

// wait_for_token blocks until the job's token is set (or 20 s, so a broken worker fails the test
// instead of hanging it).
bool wait_for_token(const JobContext& ctx) {
  return wait_until([&] { return ctx.cancel_requested(); }, 20s, 2ms);
}

// ---------------------------------------------------------------------------------------------
// Running and acking

TEST_F(WorkerTest, RunsNativeHandlersAndAcksTheirResults) {
  std::mutex mutex;
  std::map<std::string, Job> seen;  // the job document each handler saw, by id
  Worker worker(broker_, options(2));
  worker.register_handler("echo", [&](JobContext& ctx) {
    {
      std::lock_guard lock(mutex);
      seen[ctx.id()] = ctx.job();
    }
    return cat({R"({"args":)", ctx.job().args, "}"});
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    Job job = make_job("echo");
    job.args = cat({"[", std::to_string(i), "]"});
    ids.push_back(enqueue(job));
  }
  worker.start();
  EXPECT_TRUE(worker.running());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const Job done = wait_final(ids[i]);
    EXPECT_EQ(done.state, JobState::kSucceeded);
    EXPECT_EQ(done.result,
              std::optional<std::string>(cat({R"({"args":[)", std::to_string(i), "]}"})));
    EXPECT_EQ(done.attempt, 1);
  }
  EXPECT_TRUE(wait_until([&] { return worker.stats().succeeded == 10; }, 5s));
  const WorkerStats stats = worker.stats();
  EXPECT_EQ(stats.reserved, 10u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.retried, 0u);
  const StopReport report = worker.stop();
  EXPECT_TRUE(report.clean);
  EXPECT_EQ(report.returned, 0u);
  EXPECT_FALSE(worker.running());

  std::lock_guard lock(mutex);
  ASSERT_EQ(seen.size(), 10u);
  for (const auto& [id, job] : seen) {
    EXPECT_EQ(job.id, id);
    EXPECT_EQ(job.task, "echo");
    EXPECT_EQ(job.state, JobState::kRunning);
    EXPECT_EQ(job.attempt, 1);
    EXPECT_NE(job.lease_token, 0u) << "the handler's job carries its delivery's lease";
  }
}

TEST_F(WorkerTest, RegisterHandlerAddsAndReplaces) {
  Worker worker(broker_, options(1));
  EXPECT_FALSE(worker.has_handler("task.a"));
  worker.register_handler("task.a", [](JobContext&) { return std::string(R"("first")"); });
  EXPECT_TRUE(worker.has_handler("task.a"));
  EXPECT_FALSE(worker.has_handler("task.b"));
  worker.register_handler("task.a", [](JobContext&) { return std::string(R"("second")"); });
  const std::string id = enqueue(make_job("task.a"));
  worker.start();
  const Job done = wait_final(id);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  EXPECT_EQ(done.result, std::optional<std::string>(R"("second")"));
}

// ---------------------------------------------------------------------------------------------
// Slots: concurrency, free slots, per-queue caps

TEST_F(WorkerTest, ConcurrentHandlersNeverExceedConcurrency) {
  constexpr int kConcurrency = 3;
  MaxTracker tracker;
  Worker worker(broker_, options(kConcurrency));
  worker.register_handler("busy", [&](JobContext& ctx) {
    tracker.enter();
    // Hold the slot until the worker has shown it can fill every slot at once, so the maximum
    // below is really reached; then keep a short overlap to expose over-commitment.
    wait_until([&] { return tracker.max() >= kConcurrency || ctx.cancel_requested(); }, 2s, 1ms);
    std::this_thread::sleep_for(5ms);
    tracker.leave();
    return std::string("null");
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) ids.push_back(enqueue(make_job("busy")));
  worker.start();
  for (const auto& id : ids) EXPECT_EQ(wait_final(id, 30s).state, JobState::kSucceeded);
  EXPECT_LE(tracker.max(), kConcurrency) << "more handlers ran at once than concurrency";
  EXPECT_EQ(tracker.max(), kConcurrency) << "the worker never used all of its slots";
}

TEST_F(WorkerTest, HoldsNoMoreJobsThanFreeSlots) {
  Gate long_gate;
  Gate short_gate;
  std::atomic<int> long_started{0};
  std::atomic<int> short_started{0};
  std::int64_t max_running = 0;
  auto sample = [&] {
    max_running = std::max(max_running, running_in_broker());
    return max_running;
  };

  Worker worker(broker_, options(2));
  worker.register_handler("long", [&](JobContext& ctx) {
    ++long_started;
    long_gate.wait(&ctx);
    return std::string(R"("long")");
  });
  worker.register_handler("short", [&](JobContext& ctx) {
    ++short_started;
    short_gate.wait(&ctx);
    return std::string(R"("short")");
  });

  const std::string long_id = enqueue(make_job("long"));
  worker.start();
  ASSERT_TRUE(wait_until([&] { return long_started.load() == 1; }, 10s));
  std::vector<std::string> short_ids;
  for (int i = 0; i < 5; ++i) short_ids.push_back(enqueue(make_job("short")));
  ASSERT_TRUE(wait_until([&] { return short_started.load() == 1; }, 10s))
      << "a job enqueued after a long one did not run on the free slot";

  // Both slots are busy: the other short jobs must stay queued in the broker, not held by the
  // worker. Watch the broker for a while (a bounded sampling loop, not a synchronisation).
  for (int i = 0; i < 20; ++i) {
    sample();
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_LE(max_running, 2) << "the worker reserved more jobs than it had free slots";
  EXPECT_EQ(count_in(*broker_, JobState::kQueued), 4);
  EXPECT_EQ(short_started.load(), 1);
  EXPECT_LE(worker.stats().running, 2u);

  // The short jobs all pass through the second slot while the long one still holds the first.
  short_gate.open();
  EXPECT_TRUE(wait_until(
      [&] {
        sample();
        for (const auto& id : short_ids) {
          if (state_of(*broker_, id) != JobState::kSucceeded) return false;
        }
        return true;
      },
      10s));
  EXPECT_EQ(state_of(*broker_, long_id), JobState::kRunning);
  EXPECT_LE(max_running, 2) << "the worker reserved more jobs than it had free slots";
  long_gate.open();
  EXPECT_EQ(wait_final(long_id).state, JobState::kSucceeded);
}

TEST_F(WorkerTest, PerQueueConcurrencyCapsAQueueAndLeavesTheRestToOthers) {
  Gate gate;
  MaxTracker slow;
  std::atomic<int> fast_started{0};
  WorkerOptions o = options(3);
  o.queues = {"slow", "fast"};
  o.queue_concurrency = {{"slow", 1}};
  Worker worker(broker_, o);
  worker.register_handler("slow", [&](JobContext& ctx) {
    slow.enter();
    gate.wait(&ctx);
    slow.leave();
    return std::string("null");
  });
  worker.register_handler("fast", [&](JobContext& ctx) {
    ++fast_started;
    gate.wait(&ctx);
    return std::string("null");
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(enqueue(make_job("slow", "slow")));
  worker.start();
  ASSERT_TRUE(wait_until([&] { return slow.current() == 1; }, 10s));
  for (int i = 0; i < 2; ++i) ids.push_back(enqueue(make_job("fast", "fast")));
  ASSERT_TRUE(wait_until([&] { return fast_started.load() == 2; }, 10s))
      << "the slots a capped queue cannot use were not given to the other queue";
  EXPECT_EQ(slow.max(), 1);
  EXPECT_EQ(running_in_broker("slow"), 1) << "the worker holds more slow jobs than its cap";
  EXPECT_EQ(count_in(*broker_, JobState::kQueued, "slow"), 3);
  gate.open();
  for (const auto& id : ids) EXPECT_EQ(wait_final(id).state, JobState::kSucceeded);
  EXPECT_EQ(slow.max(), 1) << "the per-queue cap was exceeded";
}

// ---------------------------------------------------------------------------------------------
// Failures: retries, error types, unknown tasks

TEST_F(WorkerTest, RetriesWithBackoffThenFailsWithTheLastError) {
  std::mutex mutex;
  std::vector<Clock::time_point> calls;
  HandlerOptions ho;
  ho.retry_backoff = 40ms;
  ho.retry_backoff_max = 10s;
  Worker worker(broker_, options(2));
  worker.register_handler(
      "flaky",
      [&](JobContext& ctx) -> std::string {
        {
          std::lock_guard lock(mutex);
          calls.push_back(Clock::now());
        }
        throw std::runtime_error("boom on attempt " + std::to_string(ctx.job().attempt));
      },
      ho);
  Job job = make_job("flaky");
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  worker.start();
  const Job failed = wait_final(id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.attempt, 3);
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, "Error") << "a std::exception is recorded with the type Error";
  EXPECT_EQ(failed.error->message, "boom on attempt 3");
  EXPECT_TRUE(wait_until([&] { return worker.stats().failed == 1; }, 5s));
  EXPECT_EQ(worker.stats().retried, 2u);
  EXPECT_EQ(worker.stats().succeeded, 0u);

  std::lock_guard lock(mutex);
  ASSERT_EQ(calls.size(), 3u) << "the handler ran a number of times other than max_attempts";
  // Backoff after attempt n is 40 ms * 2^(n-1) with +-50% jitter: at least 20 ms, then 40 ms.
  EXPECT_GE(calls[1] - calls[0], 18ms) << "retried before its backoff";
  EXPECT_GE(calls[2] - calls[1], 38ms) << "the backoff did not grow";
}

TEST_F(WorkerTest, HandlerErrorTypeMessageAndTracebackAreRecorded) {
  Worker worker(broker_, options(1));
  worker.register_handler("picky", [](JobContext&) -> std::string {
    throw HandlerError("ValueError", "bad value: 'x'", "Traceback (most recent call last):\n");
  });
  Job job = make_job("picky");
  job.max_attempts = 1;
  const std::string id = enqueue(job);
  worker.start();
  const Job failed = wait_final(id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.attempt, 1);
  EXPECT_EQ(failed.error,
            std::optional<JobFailure>(JobFailure{"ValueError", "bad value: 'x'",
                                                 "Traceback (most recent call last):\n"}));
}

TEST_F(WorkerTest, AHandlerErrorWithRetryAtSchedulesTheRetryThenInsteadOfTheBackoff) {
  const EpochMs later = now_ms() + 3'600'000;
  HandlerOptions ho;
  ho.retry_backoff = 10ms;  // would retry at once without retry_at
  Worker worker(broker_, options(1));
  worker.register_handler(
      "eta",
      [&](JobContext&) -> std::string { throw HandlerError("Deferred", "not yet", "", later); },
      ho);
  Job job = make_job("eta");
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  worker.start();
  EXPECT_TRUE(wait_until([&] { return worker.stats().retried == 1; }, 5s));
  worker.stop();
  const auto stored = broker_->get(id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->state, JobState::kScheduled);
  EXPECT_EQ(stored->run_at, later);
  EXPECT_EQ(stored->attempt, 1);
}

// A handler's FailureAction decides in the worker's place: each job below has attempts left.
TEST_F(WorkerTest, AHandlersFailureActionDecidesTheOutcomeAndTheCounters) {
  auto events = std::make_shared<JobEventQueue>();
  const EpochMs later = now_ms() + 3'600'000;
  auto throwing = [](FailureAction action, std::optional<std::int64_t> retry_at = std::nullopt) {
    return [action, retry_at](JobContext&) -> std::string {
      throw HandlerError("Failure", "asked", "tb", retry_at, action);
    };
  };
  Worker worker(broker_, options(2));
  worker.add_observer(events);
  worker.register_handler("fail", throwing(FailureAction::kFail));
  worker.register_handler("retried", throwing(FailureAction::kRetried));
  worker.register_handler("snooze", throwing(FailureAction::kSnooze, later));
  worker.register_handler("cancel", throwing(FailureAction::kCancel));
  std::map<std::string, std::string> ids;
  for (const char* task : {"fail", "retried", "snooze", "cancel"}) {
    Job job = make_job(task);
    job.max_attempts = 5;
    ids[task] = enqueue(job);
  }
  worker.start();
  ASSERT_TRUE(wait_until(
      [&] {
        const WorkerStats s = worker.stats();
        return s.failed == 1 && s.retried == 1 && s.snoozed == 1 && s.cancelled == 1;
      },
      5s));
  worker.stop();
  const WorkerStats stats = worker.stats();
  EXPECT_EQ(stats.succeeded, 0u);
  EXPECT_EQ(stats.reserved, 4u) << "nothing ran twice";
  EXPECT_EQ(broker_->get(ids["fail"])->state, JobState::kFailed);
  // The handler enqueued the next attempt itself: this job ends, the broker schedules nothing.
  EXPECT_EQ(broker_->get(ids["retried"])->state, JobState::kFailed);
  EXPECT_EQ(broker_->get(ids["cancel"])->state, JobState::kCancelled);
  const auto snoozed = broker_->get(ids["snooze"]);
  EXPECT_EQ(snoozed->state, JobState::kScheduled);
  EXPECT_EQ(snoozed->run_at, later);
  EXPECT_EQ(snoozed->attempt, 0) << "a snooze does not count the attempt";
  std::map<std::string, JobEventKind> ends;
  for (const JobEvent& e : events->take(100, 0ms)) {
    if (e.kind != JobEventKind::kStarted) ends[e.task] = e.kind;
  }
  EXPECT_EQ(ends["fail"], JobEventKind::kFailed);
  EXPECT_EQ(ends["retried"], JobEventKind::kRetried);
  EXPECT_EQ(ends["snooze"], JobEventKind::kSnoozed);
  EXPECT_EQ(ends["cancel"], JobEventKind::kCancelled);
}

TEST_F(WorkerTest, UnknownTaskFailsAtOnceWithoutRetry) {
  std::atomic<int> known_runs{0};
  Worker worker(broker_, options(1));
  worker.register_handler("known", [&](JobContext&) {
    ++known_runs;
    return std::string("null");
  });
  Job stray = make_job("nobody.home");
  stray.max_attempts = 5;
  const std::string stray_id = enqueue(stray);
  const std::string known_id = enqueue(make_job("known"));
  worker.start();
  const Job failed = wait_final(stray_id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.attempt, 1) << "an unknown task was retried";
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, "UnknownTask");
  EXPECT_NE(failed.error->message.find("nobody.home"), std::string::npos) << failed.error->message;
  EXPECT_EQ(wait_final(known_id).state, JobState::kSucceeded);
  EXPECT_EQ(known_runs.load(), 1);
}

// ---------------------------------------------------------------------------------------------
// Tokens: soft timeouts, cancellation, progress

TEST_F(WorkerTest, SoftTimeoutEndsTheJobWithJobTimeout) {
  std::atomic<int> reason{0};
  std::atomic<bool> progress_threw_timeout{false};
  std::atomic<long long> waited_ms{-1};
  Worker worker(broker_, options(1));
  worker.register_handler("slowpoke", [&](JobContext& ctx) {
    const auto start = Clock::now();
    wait_for_token(ctx);
    waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    reason = static_cast<int>(ctx.stop_reason());
    try {
      ctx.progress(0.5, "after the deadline");
    } catch (const JobTimeout&) {
      progress_threw_timeout = true;
      throw;
    }
    return std::string(R"("ignored the timeout")");
  });
  Job job = make_job("slowpoke");
  job.timeout_ms = 100;
  job.max_attempts = 1;
  const std::string id = enqueue(job);
  worker.start();
  const Job failed = wait_final(id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, "JobTimeout");
  EXPECT_EQ(reason.load(), static_cast<int>(StopReason::kTimeout));
  EXPECT_TRUE(progress_threw_timeout.load());
  EXPECT_GE(waited_ms.load(), 90) << "the token was set before the soft timeout passed";
}

TEST_F(WorkerTest, SoftTimeoutIsRetriedWhileAttemptsRemain) {
  std::atomic<int> runs{0};
  HandlerOptions ho;
  ho.retry_backoff = 10ms;
  Worker worker(broker_, options(1));
  worker.register_handler(
      "slowpoke",
      [&](JobContext& ctx) {
        ++runs;
        wait_for_token(ctx);
        ctx.progress(1.0);  // throws JobTimeout
        return std::string("null");
      },
      ho);
  Job job = make_job("slowpoke");
  job.timeout_ms = 100;
  job.max_attempts = 2;
  const std::string id = enqueue(job);
  worker.start();
  const Job failed = wait_final(id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.attempt, 2);
  EXPECT_EQ(runs.load(), 2);
  ASSERT_TRUE(failed.error.has_value());
  EXPECT_EQ(failed.error->type, "JobTimeout");
}

TEST_F(WorkerTest, JobContextProgressIsStoredAndThrowsOnceTheTokenIsSet) {
  for (int i = 0; i < 4; ++i) enqueue(make_job());
  ReserveParams params;
  params.queues = {"default"};
  params.max_jobs = 4;
  const auto jobs = broker_->reserve(params);
  ASSERT_EQ(jobs.size(), 4u);

  JobContext ctx(jobs[0], broker_);
  EXPECT_EQ(ctx.job(), jobs[0]);
  EXPECT_EQ(ctx.id(), jobs[0].id);
  EXPECT_FALSE(ctx.cancel_requested());
  EXPECT_EQ(ctx.stop_reason(), StopReason::kNone);
  ctx.progress(0.5, "step", "message");
  EXPECT_EQ(get_job(*broker_, ctx.id()).progress,
            std::optional<Progress>(Progress{0.5, "step", "message"}));
  ctx.progress(1.7);
  EXPECT_EQ(get_job(*broker_, ctx.id()).progress->fraction, 1.0) << "fraction is clamped";
  ctx.progress(-0.3);
  EXPECT_EQ(get_job(*broker_, ctx.id()).progress->fraction, 0.0) << "fraction is clamped";

  EXPECT_TRUE(ctx.request_stop(StopReason::kTimeout));
  EXPECT_TRUE(ctx.cancel_requested());
  EXPECT_FALSE(ctx.request_stop(StopReason::kCancelled)) << "the first reason stands";
  EXPECT_EQ(ctx.stop_reason(), StopReason::kTimeout);
  EXPECT_THROW(ctx.progress(0.9), JobTimeout);

  JobContext cancelled(jobs[1], broker_);
  EXPECT_TRUE(cancelled.request_stop(StopReason::kCancelled));
  EXPECT_THROW(cancelled.progress(0.9), JobCancelled);

  for (const auto& [job, reason] :
       {std::pair{jobs[2], StopReason::kShutdown}, std::pair{jobs[3], StopReason::kLeaseLost}}) {
    JobContext other(job, broker_);
    other.request_stop(reason);
    try {
      other.progress(0.9);
      ADD_FAILURE() << "progress did not throw after stop reason " << static_cast<int>(reason);
    } catch (const JobCancelled&) {
    } catch (const JobTimeout&) {
    }
  }
}

TEST_F(WorkerTest, JobContextProgressIsSafeFromManyThreads) {
  enqueue(make_job());
  ReserveParams params;
  params.queues = {"default"};
  const auto jobs = broker_->reserve(params);
  ASSERT_EQ(jobs.size(), 1u);
  JobContext ctx(jobs[0], broker_);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&ctx, t] {
        for (int i = 0; i < 25; ++i) ctx.progress(0.25 * t, "thread " + std::to_string(t));
      });
    }
  }
  const auto progress = get_job(*broker_, jobs[0].id).progress;
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(progress->step, "thread " + std::to_string(static_cast<int>(progress->fraction * 4)));
}

TEST_F(WorkerTest, HandlerProgressIsVisibleInTheBrokerWhileItRuns) {
  Gate gate;
  Worker worker(broker_, options(1));
  worker.register_handler("reporter", [&](JobContext& ctx) {
    ctx.progress(0.5, "half", "half way there");
    gate.wait(&ctx);
    return std::string("null");
  });
  const std::string id = enqueue(make_job("reporter"));
  worker.start();
  EXPECT_TRUE(wait_until(
      [&] {
        return get_job(*broker_, id).progress == Progress{0.5, "half", "half way there"};
      },
      10s));
  EXPECT_EQ(state_of(*broker_, id), JobState::kRunning);
  gate.open();
  EXPECT_EQ(wait_final(id).state, JobState::kSucceeded);
}

TEST_F(WorkerTest, CancelOfARunningJobReachesTheHandlerAndEndsItCancelled) {
  std::atomic<int> started{0};
  std::atomic<int> reason{0};
  std::atomic<bool> progress_threw_cancelled{false};
  Worker worker(broker_, options(1));
  worker.register_handler("patient", [&](JobContext& ctx) {
    ++started;
    wait_for_token(ctx);
    reason = static_cast<int>(ctx.stop_reason());
    try {
      ctx.progress(0.9);
    } catch (const JobCancelled&) {
      progress_threw_cancelled = true;
      throw;
    }
    return std::string("null");
  });
  Job job = make_job("patient");
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  worker.start();
  ASSERT_TRUE(wait_until([&] { return started.load() == 1; }, 10s));
  EXPECT_EQ(broker_->cancel(id), JobState::kRunning);
  const Job done = wait_final(id, 5s);
  EXPECT_EQ(done.state, JobState::kCancelled);
  EXPECT_EQ(reason.load(), static_cast<int>(StopReason::kCancelled));
  EXPECT_TRUE(progress_threw_cancelled.load());
  EXPECT_EQ(started.load(), 1) << "a cancelled job was run again";
  EXPECT_TRUE(wait_until([&] { return worker.stats().cancelled == 1; }, 5s));
}

TEST_F(WorkerTest, CancelOfAQueuedJobMeansItNeverRuns) {
  std::atomic<int> victim_runs{0};
  Worker worker(broker_, options(1));
  worker.register_handler("victim", [&](JobContext&) {
    ++victim_runs;
    return std::string("null");
  });
  worker.register_handler("marker", [](JobContext&) { return std::string("null"); });
  Job victim = make_job("victim");
  victim.priority = 10;  // would run first, were it not cancelled
  const std::string victim_id = enqueue(victim);
  ASSERT_EQ(broker_->cancel(victim_id), JobState::kCancelled);
  const std::string marker_id = enqueue(make_job("marker"));
  worker.start();
  EXPECT_EQ(wait_final(marker_id).state, JobState::kSucceeded);
  EXPECT_EQ(victim_runs.load(), 0);
  EXPECT_EQ(state_of(*broker_, victim_id), JobState::kCancelled);
}

// ---------------------------------------------------------------------------------------------
// Leases

TEST_F(WorkerTest, LeaseIsRenewedWhileAHandlerRunsPastIt) {
  std::atomic<int> runs{0};
  std::atomic<bool> token_set{false};
  WorkerOptions o = options(1);
  o.lease = 300ms;
  o.heartbeat = std::chrono::milliseconds::zero();             // lease / 3
  o.maintenance_interval = std::chrono::milliseconds::zero();  // lease / 2
  Worker worker(broker_, o);
  worker.register_handler("marathon", [&](JobContext& ctx) {
    ++runs;
    work_for(ctx, 1000ms);  // three leases long
    token_set = ctx.cancel_requested();
    return std::string(R"("finished")");
  });
  const std::string id = enqueue(make_job("marathon"));
  worker.start();

  // Meanwhile another process's rescuer runs recover_expired on the same store.
  auto rescuer = open_broker(broker_->url());
  std::size_t recovered = 0;
  std::optional<Job> done;
  ASSERT_TRUE(wait_until(
      [&] {
        const RecoverReport r = rescuer->recover_expired();
        recovered += r.requeued + r.failed;
        done = broker_->get(id);
        return done && is_final(done->state);
      },
      15s, 20ms));
  EXPECT_EQ(done->state, JobState::kSucceeded);
  EXPECT_EQ(done->result, std::optional<std::string>(R"("finished")"));
  EXPECT_EQ(done->attempt, 1) << "the job was redelivered: its lease was not renewed";
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(recovered, 0u);
  EXPECT_FALSE(token_set.load()) << "the handler's token was set while it held a live lease";
  EXPECT_EQ(worker.stats().lost, 0u);
}

TEST_F(WorkerTest, RecoversExpiredLeasesOfADeadWorker) {
  Job job = make_job("orphan");
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  ReserveParams params;  // a worker that reserves and then dies
  params.queues = {"default"};
  params.lease = 50ms;
  params.worker_id = "dead-worker";
  ASSERT_EQ(broker_->reserve(params).size(), 1u);

  WorkerOptions o = options(1);
  o.maintenance_interval = 50ms;
  Worker worker(broker_, o);
  worker.register_handler("orphan",
                          [](JobContext& ctx) { return std::to_string(ctx.job().attempt); });
  worker.start();
  const Job done = wait_final(id);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  EXPECT_EQ(done.attempt, 2);
  EXPECT_EQ(done.result, std::optional<std::string>("2"));
}

// ---------------------------------------------------------------------------------------------
// Start and stop

TEST_F(WorkerTest, StopWithinGraceLetsInFlightJobsFinish) {
  std::atomic<int> started{0};
  std::atomic<int> token_seen{0};
  Worker worker(broker_, options(2));
  worker.register_handler("steady", [&](JobContext& ctx) {
    ++started;
    const auto until = Clock::now() + 300ms;
    while (Clock::now() < until) {
      if (ctx.cancel_requested()) ++token_seen;
      std::this_thread::sleep_for(2ms);
    }
    return std::string(R"("done")");
  });
  const std::string a = enqueue(make_job("steady"));
  const std::string b = enqueue(make_job("steady"));
  worker.start();
  ASSERT_TRUE(wait_until([&] { return started.load() == 2; }, 10s));
  const StopReport report = worker.stop(10s);
  EXPECT_EQ(report.finished, 2u);
  EXPECT_EQ(report.returned, 0u);
  EXPECT_TRUE(report.clean);
  EXPECT_FALSE(worker.running());
  EXPECT_EQ(state_of(*broker_, a), JobState::kSucceeded) << "a graceful stop lost a result";
  EXPECT_EQ(state_of(*broker_, b), JobState::kSucceeded) << "a graceful stop lost a result";
  EXPECT_EQ(token_seen.load(), 0) << "the token was set within the grace period";

  // A stopped worker reserves nothing more.
  const std::string later = enqueue(make_job("steady"));
  EXPECT_EQ(state_of(*broker_, later), JobState::kQueued);
  EXPECT_EQ(started.load(), 2);
}

TEST_F(WorkerTest, StopPastGraceReturnsARunningJobToTheQueueWithoutCountingTheAttempt) {
  std::atomic<int> started{0};
  std::atomic<int> reason{0};
  Worker worker(broker_, options(1));
  worker.register_handler("endless", [&](JobContext& ctx) {
    ++started;
    wait_for_token(ctx);
    reason = static_cast<int>(ctx.stop_reason());
    ctx.progress(0.1);  // throws: the job was stopped
    return std::string(R"("should not be stored")");
  });
  Job job = make_job("endless");
  job.max_attempts = 1;  // the release must not spend the only attempt
  const std::string id = enqueue(job);
  worker.start();
  ASSERT_TRUE(wait_until([&] { return started.load() == 1; }, 10s));
  const StopReport report = worker.stop(200ms);
  EXPECT_EQ(report.returned, 1u);
  EXPECT_EQ(report.finished, 0u);
  EXPECT_FALSE(worker.running());
  EXPECT_EQ(worker.stats().released, 1u);
  // stop() need not wait for the handler to unwind; its token is set, so it does so soon.
  EXPECT_TRUE(wait_until([&] { return reason.load() != 0; }, 5s));
  EXPECT_EQ(reason.load(), static_cast<int>(StopReason::kShutdown));

  const Job returned = get_job(*broker_, id);
  EXPECT_EQ(returned.state, JobState::kQueued) << to_json(returned);
  EXPECT_FALSE(returned.result.has_value());
  ReserveParams params;
  params.queues = {"default"};
  const auto again = broker_->reserve(params);
  ASSERT_EQ(again.size(), 1u) << "the returned job is not reservable";
  EXPECT_EQ(again.front().attempt, 1) << "the returned job's attempt was counted";
}

TEST_F(WorkerTest, StopPastGraceKeepsAStubbornHandlersJobLeasedUntilItReturnsThenStoresIt) {
  Gate gate;
  std::atomic<int> started{0};
  const std::string id = enqueue(make_job("stubborn"));
  {
    WorkerOptions o = options(1);
    o.lease = 300ms;  // short: the job would be recovered soon were its lease not renewed
    Worker worker(broker_, o);
    worker.register_handler("stubborn", [&](JobContext&) {
      ++started;
      gate.wait(nullptr, 20s);  // ignores its token
      return std::string(R"("late")");
    });
    worker.start();
    ASSERT_TRUE(wait_until([&] { return started.load() == 1; }, 10s));
    const StopReport report = worker.stop(100ms);
    EXPECT_EQ(report.returned, 0u) << "a job was handed back while its handler still ran";
    EXPECT_FALSE(report.clean) << "stop returned while a handler was busy but called it clean";
    // Well past its lease, the job is still this worker's: nobody else can reserve it.
    std::this_thread::sleep_for(3 * o.lease);  // lets leases expire were they not renewed
    broker_->recover_expired();
    ReserveParams params;
    params.queues = {"default"};
    EXPECT_TRUE(broker_->reserve(params).empty()) << "the running job was handed out again";
    EXPECT_EQ(state_of(*broker_, id), JobState::kRunning);
    gate.open();  // the handler returns now; the destructor waits for it and stores its result
  }
  const Job after = get_job(*broker_, id);
  EXPECT_EQ(after.state, JobState::kSucceeded) << to_json(after);
  EXPECT_EQ(after.result, std::optional<std::string>(R"("late")"));
  EXPECT_EQ(after.attempt, 1);
}

TEST_F(WorkerTest, StopPastGraceReturnsTheJobOfAHandlerThatGivesUpOnItsToken) {
  const std::string id = enqueue(make_job("polite"));
  Worker worker(broker_, options(1));
  std::atomic<bool> started{false};
  worker.register_handler("polite", [&](JobContext& ctx) {
    started = true;
    wait_for_token(ctx);
    ctx.throw_if_stopped();
    return std::string("null");
  });
  worker.start();
  ASSERT_TRUE(wait_until([&] { return started.load(); }, 10s));
  const StopReport report = worker.stop(50ms);
  EXPECT_TRUE(report.clean);
  EXPECT_EQ(report.returned, 1u);
  const Job job = get_job(*broker_, id);
  EXPECT_EQ(job.state, JobState::kQueued);
  EXPECT_FALSE(job.error.has_value()) << "giving up on shutdown is no failure";
}

TEST_F(WorkerTest, AStopAfterEveryHandlerReturnedIsAlwaysReportedClean) {
  // The handler threads hand their outcome over before they leave the job; stop() must wait
  // for them to leave, or it reports a busy handler that was in fact done.
  for (int round = 0; round < 200; ++round) {
    Worker worker(broker_, options(4));
    worker.register_handler("quick", [](JobContext&) { return std::string("1"); });
    std::vector<std::string> ids;
    for (int i = 0; i < 8; ++i) ids.push_back(enqueue(make_job("quick")));
    worker.start();
    for (const auto& id : ids) ASSERT_TRUE(wait_state(id, JobState::kSucceeded));
    const StopReport report = worker.stop();
    ASSERT_TRUE(report.clean) << "round " << round;
    ASSERT_EQ(report.returned, 0u) << "round " << round;
  }
}

TEST_F(WorkerTest, StopIsSafeBeforeStartAndTwiceAndStartTwiceIsANoOp) {
  std::atomic<int> runs{0};
  Worker worker(broker_, options(2));
  worker.register_handler("count", [&](JobContext&) {
    ++runs;
    return std::string("null");
  });
  EXPECT_FALSE(worker.running());
  const StopReport before = worker.stop();
  EXPECT_TRUE(before.clean);
  EXPECT_EQ(before.finished + before.returned, 0u);
  EXPECT_FALSE(worker.running());

  worker.start();
  worker.start();
  EXPECT_TRUE(worker.running());
  const std::string id = enqueue(make_job("count"));
  EXPECT_EQ(wait_final(id).state, JobState::kSucceeded);
  EXPECT_EQ(runs.load(), 1) << "a second start() ran a second set of threads";

  worker.stop();
  EXPECT_FALSE(worker.running());
  const StopReport again = worker.stop();
  EXPECT_TRUE(again.clean);
  EXPECT_EQ(again.returned, 0u);
  EXPECT_FALSE(worker.running());
  EXPECT_EQ(worker.options().concurrency, 2);
}

TEST_F(WorkerTest, DestroyingARunningWorkerStopsIt) {
  std::atomic<int> runs{0};
  const std::string id = enqueue(make_job("count"));
  {
    Worker worker(broker_, options(2));
    worker.register_handler("count", [&](JobContext&) {
      ++runs;
      return std::string("null");
    });
    worker.start();
    EXPECT_EQ(wait_final(id).state, JobState::kSucceeded);
  }
  const std::string later = enqueue(make_job("count"));
  EXPECT_EQ(state_of(*broker_, later), JobState::kQueued);
  EXPECT_EQ(runs.load(), 1);
}

// ---------------------------------------------------------------------------------------------
// Builtin handlers

TEST_F(WorkerTest, BuiltinNoopAndSleepHandlersRun) {
  Worker worker(broker_, options(2));
  register_builtin_handlers(worker);
  EXPECT_TRUE(worker.has_handler("cinejobs.noop"));
  EXPECT_TRUE(worker.has_handler("cinejobs.sleep"));
  const std::string noop = enqueue(make_job("cinejobs.noop"));
  Job nap = make_job("cinejobs.sleep");
  nap.kwargs = R"({"seconds":0.05})";
  const std::string sleep = enqueue(nap);
  worker.start();
  const Job noop_done = wait_final(noop);
  EXPECT_EQ(noop_done.state, JobState::kSucceeded);
  EXPECT_EQ(noop_done.result, std::optional<std::string>("null"));
  EXPECT_EQ(wait_final(sleep).state, JobState::kSucceeded);
}

TEST_F(WorkerTest, BuiltinSleepReportsProgressAndHonoursCancel) {
  Worker worker(broker_, options(1));
  register_builtin_handlers(worker);
  Job nap = make_job("cinejobs.sleep");
  nap.kwargs = R"({"seconds":60})";
  const std::string id = enqueue(nap);
  worker.start();
  ASSERT_TRUE(wait_until(
      [&] {
        const Job job = get_job(*broker_, id);
        return job.state == JobState::kRunning && job.progress.has_value();
      },
      10s))
      << "cinejobs.sleep reported no progress";
  const auto t0 = Clock::now();
  EXPECT_EQ(broker_->cancel(id), JobState::kRunning);
  EXPECT_EQ(wait_final(id, 10s).state, JobState::kCancelled);
  EXPECT_LT(Clock::now() - t0, 10s);
}

// A native handler with a rate limit: the burst runs, the rest is snoozed to scheduled with
// its attempt not counted (max_attempts 1 would otherwise make a refusal final), and none fails.
TEST_F(WorkerTest, RateLimitedHandlerSnoozesWhatTheLimitRefuses) {
  HandlerOptions limited;
  limited.rate_limiter =
      std::make_shared<RateLimiter>(make_local_rate_limit_store(), "native", Rate{1, 60s}, 2);
  limited.rate_limit_key = [](const Job& job) { return job.args == "[\"b\"]" ? "b" : ""; };
  std::atomic<int> ran{0};
  Worker worker(broker_, options(2));
  worker.register_handler(
      "limited",
      [&](JobContext&) {
        ++ran;
        return std::string("null");
      },
      limited);
  std::vector<std::string> ids;
  for (const char* args : {"[]", "[]", "[]", "[]", "[\"b\"]"}) {
    Job job = make_job("limited");
    job.args = args;
    job.max_attempts = 1;
    ids.push_back(enqueue(job));
  }
  worker.start();
  ASSERT_TRUE(wait_until([&] { return worker.stats().snoozed >= 2; }, 10s));
  ASSERT_TRUE(wait_state(ids.back(), JobState::kSucceeded)) << "key b has its own bucket";
  worker.stop();
  EXPECT_EQ(ran.load(), 3);
  EXPECT_EQ(worker.stats().failed, 0u);
  int scheduled = 0;
  for (const auto& id : ids) {
    const Job job = get_job(*broker_, id);
    if (job.state != JobState::kScheduled) continue;
    ++scheduled;
    EXPECT_EQ(job.attempt, 0);
    EXPECT_GT(job.run_at, now_ms() + 30'000) << "held back until the limit has a unit again";
  }
  EXPECT_EQ(scheduled, 2);
}

// ---------------------------------------------------------------------------------------------
// Job events

TEST_F(WorkerTest, ObserversSeeOneStartAndOneEndPerAttemptWithTheErrorOfAFailure) {
  auto events = std::make_shared<JobEventQueue>();
  HandlerOptions ho;
  ho.retry_backoff = 1ms;
  ho.retry_backoff_max = 1ms;
  Worker worker(broker_, options(2));
  worker.add_observer(events);
  worker.register_handler("ok", [](JobContext&) { return std::string("1"); });
  worker.register_handler(
      "bad", [](JobContext&) -> std::string { throw HandlerError("ValueError", "no", "tb"); }, ho);
  const std::string ok = enqueue(make_job("ok"));
  Job bad_job = make_job("bad");
  bad_job.max_attempts = 2;
  const std::string bad = enqueue(bad_job);
  worker.start();
  wait_final(ok);
  wait_final(bad);
  ASSERT_TRUE(wait_until([&] { return worker.stats().failed == 1; }, 5s));
  worker.stop();
  std::map<std::string, std::vector<JobEvent>> by_id;
  for (JobEvent& e : events->take(100, 0ms)) by_id[e.id].push_back(std::move(e));
  // Attempt 2 may start before the end of attempt 1 is reported (the broker stored it first):
  // order holds within an attempt, so compare attempt by attempt.
  for (auto& [id, list] : by_id) {
    std::stable_sort(list.begin(), list.end(),
                     [](const JobEvent& a, const JobEvent& b) { return a.attempt < b.attempt; });
  }
  ASSERT_EQ(by_id[ok].size(), 2u);
  EXPECT_EQ(by_id[ok][0].kind, JobEventKind::kStarted);
  EXPECT_EQ(by_id[ok][1].kind, JobEventKind::kSucceeded);
  EXPECT_EQ(by_id[ok][1].task, "ok");
  EXPECT_EQ(by_id[ok][1].attempt, 1);
  ASSERT_EQ(by_id[bad].size(), 4u) << "two attempts: start and end each";
  EXPECT_EQ(by_id[bad][1].kind, JobEventKind::kRetried);
  EXPECT_GT(by_id[bad][1].retry_at, 0);
  EXPECT_EQ(by_id[bad][3].kind, JobEventKind::kFailed);
  EXPECT_EQ(by_id[bad][3].attempt, 2);
  ASSERT_TRUE(by_id[bad][3].error.has_value());
  EXPECT_EQ(by_id[bad][3].error->type, "ValueError");
  EXPECT_EQ(by_id[bad][3].error->traceback, "tb");
}

TEST_F(WorkerTest, AJobEventQueueDropsTheOldestWhenFullAndCountsThem) {
  JobEventQueue queue(2);
  for (int i = 0; i < 5; ++i) {
    JobEvent e;
    e.id = std::to_string(i);
    queue.on_job_event(e);
  }
  const auto taken = queue.take(10, 0ms);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].id, "3");
  EXPECT_EQ(queue.dropped(), 3u);
}

TEST_F(WorkerTest, AJobEventQueueKeepsOnlyTheKindsItWasGiven) {
  JobEventQueue queue(10, {JobEventKind::kFailed, JobEventKind::kRetried});
  for (JobEventKind kind : {JobEventKind::kStarted, JobEventKind::kSucceeded,
                            JobEventKind::kRetried, JobEventKind::kFailed}) {
    JobEvent e;
    e.kind = kind;
    queue.on_job_event(e);
  }
  const auto taken = queue.take(10, 0ms);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].kind, JobEventKind::kRetried);
  EXPECT_EQ(taken[1].kind, JobEventKind::kFailed);
  EXPECT_EQ(queue.dropped(), 0u) << "ignored kinds are not dropped events";
}

// ---------------------------------------------------------------------------------------------
// A retry reserved while its previous attempt is still being settled

// HoldFailUntilRetryReserved stores a retry, then holds the acker until the dispatcher has
// reserved that retry: the window in which the worker still holds attempt 1 while attempt 2
// arrives, made to happen every time.
class HoldFailUntilRetryReserved : public DelegatingBroker {
 public:
  using DelegatingBroker::DelegatingBroker;
  std::size_t fail(std::span<const Fail> fails) override {
    const std::size_t n = inner_->fail(fails);
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, 5s, [&] { return retry_reserved_; });
    return n;
  }
  std::vector<Job> reserve(const ReserveParams& params) override {
    auto jobs = inner_->reserve(params);
    bool again = false;
    for (const Job& j : jobs) again = again || j.attempt == 2;
    if (again) {
      std::lock_guard lock(mutex_);
      retry_reserved_ = true;
      cv_.notify_all();
    }
    return jobs;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool retry_reserved_ = false;
};

// RetriedSeen opens when the worker reports attempt 1 retried, which it does after it has let
// go of attempt 1.
struct RetriedSeen : JobObserver {
  Gate gate;
  void on_job_event(const JobEvent& e) noexcept override {
    if (e.kind == JobEventKind::kRetried) gate.open();
  }
};

TEST_F(WorkerTest, ARetryReservedWhileItsPreviousAttemptSettlesHasItsOutcomeStored) {
  auto broker = std::make_shared<HoldFailUntilRetryReserved>(broker_);
  WorkerOptions o = options(2);
  o.lease = 30s;  // a dropped outcome would leave the job running for all of it
  Worker worker(broker, o);
  auto retried = std::make_shared<RetriedSeen>();
  worker.add_observer(retried);
  std::atomic<int> runs{0};
  HandlerOptions ho;
  ho.retry_backoff = 0ms;
  ho.retry_backoff_max = 0ms;
  worker.register_handler(
      "second_time_lucky",
      [&](JobContext& ctx) -> std::string {
        ++runs;
        if (ctx.job().attempt == 1) throw std::runtime_error("first attempt fails");
        // Attempt 2 was reserved while attempt 1 was still held; it ends only once the worker
        // has let go of attempt 1, which must not take attempt 2 with it.
        retried->gate.wait(nullptr, 5s);
        return "2";
      },
      ho);
  Job job = make_job("second_time_lucky");
  job.max_attempts = 3;
  const std::string id = enqueue(job);
  worker.start();
  const Job done = wait_final(id, 10s);
  EXPECT_EQ(done.state, JobState::kSucceeded) << to_json(done);
  EXPECT_EQ(done.attempt, 2);
  EXPECT_EQ(done.result, std::optional<std::string>("2"));
  worker.stop();
  EXPECT_EQ(runs.load(), 2) << "a handler ran again after a success";
  EXPECT_EQ(worker.stats().lost, 0u);
}

}  // namespace
