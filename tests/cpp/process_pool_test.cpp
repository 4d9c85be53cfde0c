// Process mode in C++: a Worker on SQLite whose handlers run in child processes of
// process_child_fixture, which spin for ever, segfault, exit and leak on purpose. The tests check
// what the broker records and what the pool does next; they poll with deadlines.
#include "cinejobs/process_pool.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cinejobs/errors.hpp"
#include "cinejobs/worker.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kTasks = {
    "pid", "spin", "segv", "exit", "leak", "fail", "progress_until_stopped"};

class ProcessPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = open_broker(sqlite_url(dir_.path()));
    // Under a sanitizer the child's runtime would catch the fixture's SIGSEGV and exit with a
    // report instead of dying of the signal; children read these options when they start.
    ::setenv("ASAN_OPTIONS", "handle_segv=0", 1);
    ::setenv("TSAN_OPTIONS", "handle_segv=0", 1);
  }

  static WorkerOptions options(int processes = 2, int concurrency = 1) {
    WorkerOptions o;
    o.queues = {"default"};
    o.concurrency = concurrency;
    o.processes = processes;
    o.child_command = {CINEJOBS_CHILD_FIXTURE};
    o.lease = 30s;  // long: a job settled within a second was not left to its lease
    o.heartbeat = 50ms;
    o.poll_interval = 10ms;
    o.grace = 5s;
    o.kill_grace = 300ms;
    o.worker_id = "process-pool-test";
    return o;
  }

  std::unique_ptr<Worker> start(WorkerOptions o, std::chrono::milliseconds hard = 0ms) {
    auto worker = std::make_unique<Worker>(broker_, std::move(o));
    for (const auto& task : kTasks) {
      HandlerOptions ho;
      ho.retry_backoff = 1ms;
      ho.retry_backoff_max = 1ms;
      if (task == "spin") ho.hard_timeout = hard;
      worker->register_child_task(task, ho);
    }
    worker->start();
    return worker;
  }

  std::string enqueue(const std::string& task, std::string args = "[]", int max_attempts = 1) {
    Job job = make_job(task);
    job.args = std::move(args);
    job.max_attempts = max_attempts;
    return broker_->enqueue(job).id;
  }

  Job wait_final(const std::string& id, std::chrono::milliseconds timeout = 20s) {
    std::optional<Job> job;
    wait_until(
        [&] {
          job = broker_->get(id);
          return job && is_final(job->state);
        },
        timeout);
    if (!job || !is_final(job->state)) throw std::runtime_error("job " + id + " is not final");
    return *job;
  }

  TempDir dir_;
  std::shared_ptr<Broker> broker_;
};

TEST_F(ProcessPoolTest, RunsJobsInChildProcessesAndStoresTheirResults) {
  auto worker = start(options(2, 1));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(enqueue("pid"));
  std::set<std::string> pids;
  for (const auto& id : ids) {
    const Job job = wait_final(id);
    ASSERT_EQ(job.state, JobState::kSucceeded) << to_json(job);
    pids.insert(*job.result);
  }
  EXPECT_EQ(pids.count(std::to_string(::getpid())), 0u) << "a job ran in the supervisor";
  EXPECT_EQ(pids.size(), 2u) << "both children take jobs";
  EXPECT_EQ(worker->stats().slots, 2u);
}

TEST_F(ProcessPoolTest, AHandlerErrorCrossesWithItsTypeMessageAndTraceback) {
  auto worker = start(options(1, 1));
  const Job job = wait_final(enqueue("fail"));
  ASSERT_EQ(job.state, JobState::kFailed);
  ASSERT_TRUE(job.error.has_value());
  EXPECT_EQ(job.error->type, "ValueError");
  EXPECT_EQ(job.error->message, "bad input");
  EXPECT_EQ(job.error->traceback, "Traceback: fail()");
}

TEST_F(ProcessPoolTest, AJobPastItsHardTimeoutKillsItsChildAndFailsWithJobTimeout) {
  auto worker = start(options(2, 1), 500ms);
  const std::string spin = enqueue("spin");
  std::vector<std::string> others;
  for (int i = 0; i < 30; ++i) others.push_back(enqueue("pid"));
  const Job job = wait_final(spin);
  ASSERT_EQ(job.state, JobState::kFailed);
  EXPECT_EQ(job.error->type, "JobTimeout");
  EXPECT_NE(job.error->message.find("hard time limit of 0.5 s"), std::string::npos)
      << job.error->message;
  EXPECT_LT(job.finished_at - job.started_at, 5'000) << "settled after a lease, not a kill";
  for (const auto& id : others) EXPECT_EQ(wait_final(id).state, JobState::kSucceeded);
  EXPECT_TRUE(wait_until([&] { return worker->stats().children == 2; }, 10s))
      << "the killed child was not replaced";
  EXPECT_EQ(worker->stats().child_restarts["hard_timeout"], 1u);
}

TEST_F(ProcessPoolTest, ASegfaultFailsOnlyItsJobAtOnceAndTheWorkerGoesOn) {
  auto worker = start(options(2, 1));
  const Job crashed = wait_final(enqueue("segv"));
  ASSERT_EQ(crashed.state, JobState::kFailed);
  EXPECT_EQ(crashed.error->type, "WorkerCrashed");
  EXPECT_NE(crashed.error->message.find("signal 11 (SIGSEGV)"), std::string::npos)
      << crashed.error->message;
  EXPECT_LT(crashed.finished_at - crashed.started_at, 5'000);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(wait_final(enqueue("pid")).state, JobState::kSucceeded);
  EXPECT_EQ(worker->stats().child_restarts["crashed"], 1u);
}

TEST_F(ProcessPoolTest, AChildThatExitsHasItsJobRetriedPerItsAttempts) {
  auto worker = start(options(1, 1));
  const Job job = wait_final(enqueue("exit", "[7]", 2));
  EXPECT_EQ(job.state, JobState::kFailed);
  EXPECT_EQ(job.attempt, 2);
  EXPECT_NE(job.error->message.find("exit code 7"), std::string::npos) << job.error->message;
  EXPECT_EQ(worker->stats().retried, 1u);
}

TEST_F(ProcessPoolTest, CancelAndSoftTimeoutReachTheHandlerInTheChild) {
  auto worker = start(options(1, 2));
  const std::string cancelled = enqueue("progress_until_stopped");
  Job timed = make_job("progress_until_stopped");
  timed.timeout_ms = 200;
  timed.max_attempts = 1;
  const std::string timed_id = broker_->enqueue(timed).id;
  ASSERT_TRUE(wait_until([&] { return state_of(*broker_, cancelled) == JobState::kRunning; }, 10s));
  broker_->cancel(cancelled);
  EXPECT_EQ(wait_final(cancelled).state, JobState::kCancelled);
  const Job t = wait_final(timed_id);
  EXPECT_EQ(t.state, JobState::kFailed);
  EXPECT_EQ(t.error->type, "JobTimeout");
  ASSERT_TRUE(t.progress.has_value()) << "progress crossed from the child to the broker";
  EXPECT_EQ(t.progress->step, "waiting");
}

TEST_F(ProcessPoolTest, MaxJobsPerChildRecyclesChildrenWithoutLosingOrRepeatingAJob) {
  WorkerOptions o = options(2, 2);
  o.max_jobs_per_child = 5;
  auto worker = start(o);
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(enqueue("pid"));
  std::map<std::string, int> per_child;
  for (const auto& id : ids) {
    const Job job = wait_final(id);
    ASSERT_EQ(job.state, JobState::kSucceeded);
    EXPECT_EQ(job.attempt, 1);
    ++per_child[*job.result];
  }
  for (const auto& [pid, n] : per_child) EXPECT_LE(n, 5) << "child " << pid;
  EXPECT_GE(per_child.size(), 8u);
  // A child is replaced once it has exited, a moment after its last job was stored.
  EXPECT_TRUE(wait_until([&] { return worker->stats().child_restarts["max_jobs"] >= 7; }, 10s))
      << worker->stats().child_restarts["max_jobs"];
}

TEST_F(ProcessPoolTest, MaxMemoryPerChildReplacesAChildThatGrewPastIt) {
  WorkerOptions o = options(1, 1);
  o.max_memory_per_child_mb = 60;
  auto worker = start(o);
  const Job leak = wait_final(enqueue("leak", "[100]"));
  ASSERT_EQ(leak.state, JobState::kSucceeded);
  const Job after = wait_final(enqueue("pid"));
  ASSERT_EQ(after.state, JobState::kSucceeded);
  EXPECT_NE(*after.result, *leak.result) << "the grown child still runs jobs";
  EXPECT_EQ(worker->stats().child_restarts["max_memory"], 1u);
}

TEST_F(ProcessPoolTest, StopPastGraceKillsBusyChildrenAndReturnsTheirJobs) {
  auto worker = start(options(1, 1));
  const std::string id = enqueue("spin");
  ASSERT_TRUE(wait_until([&] { return state_of(*broker_, id) == JobState::kRunning; }, 10s));
  const StopReport report = worker->stop(200ms);
  EXPECT_EQ(report.returned, 1u);
  EXPECT_TRUE(report.clean) << "the handler thread waiting for the child returned";
  const Job job = get_job(*broker_, id);
  EXPECT_EQ(job.state, JobState::kQueued);
}

TEST_F(ProcessPoolTest, AChildThatCannotStartFailsTheWorkersStart) {
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"/nonexistent/cinejobs-child"},
        std::vector<std::string>{"false"}}) {
    WorkerOptions o = options(1, 1);
    o.child_command = command;
    Worker worker(broker_, o);
    worker.register_child_task("pid");
    EXPECT_THROW(worker.start(), ConfigError) << command[0];
  }
}

TEST_F(ProcessPoolTest, ThreadModeRefusesHardTimeoutsAndChildTasks) {
  WorkerOptions threads = options(0, 1);
  threads.hard_timeout = 1s;
  EXPECT_THROW(Worker(broker_, threads), ConfigError);
  Worker worker(broker_, options(0, 1));
  HandlerOptions hard;
  hard.hard_timeout = 1s;
  try {
    worker.register_handler(
        "x", [](JobContext&) { return std::string("1"); }, hard);
    FAIL() << "a hard timeout was accepted in thread mode";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("process mode"), std::string::npos) << e.what();
  }
  EXPECT_THROW(worker.register_child_task("x"), ConfigError);
}

}  // namespace
