// ProcessPool: the child processes of a worker in process mode. The supervisor (the process that
// owns the pool and the broker) sends each job to a child over a socketpair and waits for its
// outcome; children run handlers only and never touch the broker, so leases stay renewed however
// busy a child is, and a child's death is seen at once (its socket closes), not after a lease.
//
// What the pool decides, each as an outcome of the job that caused it:
// - hard time limit: the child running a job past it gets SIGTERM, then SIGKILL after
//   kill_grace; the job ends with JobTimeout and a fresh child takes the dead one's place;
// - crash: a child that dies (segfault, os._exit, OOM kill) ends the jobs it was running with
//   WorkerCrashed and the cause ("signal 11 (SIGSEGV)"), and is replaced;
// - recycling: a child past max_jobs jobs, or whose resident memory after a job is over
//   max_memory_mb, takes no new job, is told to exit once idle, and is replaced. No job is lost.
//
// Children are spawned (posix_spawn of `command`), never forked: a replacement is started while
// the supervisor's threads run, and fork after threads is unsafe. Each runs in its own process
// group (a terminal's Ctrl-C reaches the supervisor only, which decides) and dies with it.
// Spawning is done by the pool's own thread, which lives as long as the pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cinejobs/job_context.hpp"
#include "cinejobs/worker.hpp"

namespace cinejobs {

struct ProcessPoolOptions {
  int processes = 1;
  int concurrency = 1;  // jobs one child runs at once (its handler threads)
  // argv of a child; it speaks frames on fd 3 and finds its settings in CINEJOBS_CHILD_*
  // variables (child_process.hpp).
  std::vector<std::string> command;
  std::chrono::milliseconds kill_grace = std::chrono::seconds(1);  // SIGTERM -> SIGKILL
  std::uint64_t max_jobs = 0;                                      // per child; zero means no limit
  std::uint64_t max_memory_mb = 0;  // resident, checked after each job; zero means no limit
  std::chrono::milliseconds start_timeout = std::chrono::seconds(60);  // spawn -> ready
};

struct ProcessPoolStats {
  int children = 0;  // alive now, ready or starting
  // Children replaced so far, by cause: "crashed", "hard_timeout", "max_jobs", "max_memory".
  std::map<std::string, std::uint64_t> restarts;
};

class ProcessPool {
 public:
  explicit ProcessPool(ProcessPoolOptions options);
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  // start spawns the children and waits until each has imported the app and said so. Throws
  // ConfigError when a child cannot start (its own output says why). Idempotent.
  void start();
  // Completion receives a job's outcome, on the pool's own thread (or on the caller's, for a
  // job refused at once because the pool stopped). It must not call back into the pool.
  using Completion = std::function<void(HandlerOutcome)>;
  // submit sends the job to a child with a free slot, or queues it until one frees up, and
  // returns at once: no thread waits for a job in a child. The job's stop token (cancel, soft
  // timeout, shutdown) is passed on to the child; past `hard_timeout` (zero: none), counted from
  // when the child got it, the child is stopped. `done` is called exactly once.
  void submit(std::shared_ptr<JobContext> ctx, std::chrono::milliseconds hard_timeout,
              Completion done);
  // stop lets idle children exit, kills busy ones (SIGTERM, SIGKILL after kill_grace) and
  // completes every job still in the pool (JobCancelled). Safe twice and before start.
  void stop() noexcept;

  ProcessPoolStats stats() const;
  const ProcessPoolOptions& options() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cinejobs
