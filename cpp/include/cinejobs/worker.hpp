// Worker: reserves jobs in batches, never more than it has free slots, runs their handlers on a
// thread pool, acks and fails in batches, retries with exponential backoff and jitter, renews
// leases from a C++ heartbeat thread (no GIL needed, so a handler busy in Python cannot lose
// its lease), enforces soft timeouts and cancellation through the job's token, recovers expired
// leases of dead workers, and stops gracefully: stop reserving, let in-flight jobs finish within
// the grace period, then return what still runs to the queue.
//
// Threads: one dispatcher (reserve), one acker (ack/fail), one heartbeat (extend, timeouts,
// recovery, pruning) and `concurrency` handler threads. No thread lets an exception escape: a
// handler's exception becomes its job's error.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job_context.hpp"
#include "cinejobs/job_events.hpp"
#include "cinejobs/rate_limiter.hpp"

namespace cinejobs {

// Handler runs one job and returns its result as JSON text. A failure is thrown: HandlerError
// carries a type name, message and traceback; any other std::exception is recorded with its
// what() and the type "Error".
using Handler = std::function<std::string(JobContext&)>;

// HandlerOutcome: what one run of a handler produced, its result or why it failed.
struct HandlerOutcome {
  std::string result = "null";  // JSON text
  std::optional<JobFailure> failure;
  std::optional<EpochMs> retry_at;  // the handler's own choice of when to retry
  FailureAction action = FailureAction::kRetry;
};

// run_handler calls `handler` and turns whatever it throws into a failure; a job whose token
// says timeout fails with JobTimeout even when its handler returned. The one execution path of
// a worker's threads and of a child process's.
HandlerOutcome run_handler(const Handler& handler, JobContext& ctx) noexcept;

struct HandlerOptions {
  // Retry delay after attempt n is retry_backoff * 2^(n-1), capped at retry_backoff_max, with
  // +-50% jitter so a failing upstream is not hit by every retry at once.
  std::chrono::milliseconds retry_backoff = std::chrono::seconds(1);
  std::chrono::milliseconds retry_backoff_max = std::chrono::minutes(10);
  // When set, each job takes one unit of this limit before its handler runs. A job refused is
  // snoozed: back to scheduled for the wait the limiter computed (plus jitter, so the jobs held
  // back do not all come due at once), its attempt not counted, its slot freed at once.
  std::shared_ptr<RateLimiter> rate_limiter;
  // rate_limit_key, when set, names the job's own bucket of the limit (from its arguments; ""
  // is the shared bucket). An exception it throws fails the attempt like the handler's would.
  std::function<std::string(const Job&)> rate_limit_key;
  // Hard time limit of a task run in a child process (register_child_task): past it the child
  // is killed and the job fails with JobTimeout. Zero: WorkerOptions::hard_timeout. A thread
  // cannot be killed, so register_handler refuses a non-zero value.
  std::chrono::milliseconds hard_timeout = std::chrono::milliseconds::zero();
};

struct WorkerOptions {
  std::vector<std::string> queues = {"default"};
  // Handler threads; also the most jobs this worker holds at once.
  int concurrency = 8;
  // Optional cap per queue (each within `concurrency`); queues not named share the rest.
  std::map<std::string, int> queue_concurrency;
  // Most jobs reserved in one call (each call is also bounded by free slots).
  std::size_t max_batch = 256;
  std::chrono::milliseconds lease = std::chrono::seconds(30);
  // Lease renewal period; zero means lease / 3.
  std::chrono::milliseconds heartbeat = std::chrono::milliseconds::zero();
  // Longest idle wait before reserving again when the store cannot signal new jobs.
  std::chrono::milliseconds poll_interval = std::chrono::milliseconds(50);
  // How long stop() lets in-flight jobs finish before returning them to the queue.
  std::chrono::milliseconds grace = std::chrono::seconds(30);
  // How often expired leases are recovered and finished jobs pruned; zero means lease / 2.
  std::chrono::milliseconds maintenance_interval = std::chrono::milliseconds::zero();
  std::string worker_id;  // empty: host:pid:random

  // ---- process mode (process_pool.hpp) ----
  // Child processes that run the tasks registered with register_child_task; zero runs every
  // handler on this process's threads (thread mode). In process mode `concurrency` is the jobs
  // each child runs at once, and the worker holds up to processes * concurrency jobs.
  int processes = 0;
  // argv that starts one child (the Python layer passes its interpreter and app).
  std::vector<std::string> child_command;
  // Default hard time limit of child tasks; zero means none. Refused in thread mode.
  std::chrono::milliseconds hard_timeout = std::chrono::milliseconds::zero();
  // After a hard time limit's SIGTERM, how long a child has before SIGKILL.
  std::chrono::milliseconds kill_grace = std::chrono::seconds(1);
  // Replace a child after this many jobs; zero means never.
  std::uint64_t max_jobs_per_child = 0;
  // Replace a child whose resident memory after a job exceeds this many MB; zero means never.
  std::uint64_t max_memory_per_child_mb = 0;
};

struct WorkerStats {
  std::uint64_t reserved = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;   // final failures
  std::uint64_t retried = 0;  // failed attempts scheduled again
  std::uint64_t cancelled = 0;
  std::uint64_t released = 0;  // returned to the queue by a stop past its grace
  std::uint64_t lost = 0;      // results dropped because the lease was lost
  std::uint64_t snoozed = 0;   // deliveries held back by their task's rate limit
  std::uint64_t running = 0;   // jobs held right now
  std::uint64_t slots = 0;     // the most jobs held at once
  int children = 0;            // child processes alive (process mode)
  // Children replaced, by cause: crashed, hard_timeout, max_jobs, max_memory.
  std::map<std::string, std::uint64_t> child_restarts;
};

struct StopReport {
  std::uint64_t finished = 0;  // in-flight jobs that ended within the grace period
  std::uint64_t returned = 0;  // jobs returned to the queue (not started, or given up on stop)
  // false: some handlers still run past the grace and its second of unwinding (thread mode: a
  // thread cannot be stopped). Their jobs stay leased, renewed, until they return (the outcome
  // is stored) or the process exits (the lease expires as after a kill): never handed to
  // another worker while a handler runs them.
  bool clean = true;
};

class Worker {
 public:
  Worker(std::shared_ptr<Broker> broker, WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // register_handler adds or replaces the handler for `task`. Must be called before start().
  void register_handler(std::string task, Handler handler, HandlerOptions options = {});
  bool has_handler(const std::string& task) const;
  // register_child_task runs jobs of `task` in the child processes (process mode only; a child
  // must have a handler of that name). Must be called before start().
  void register_child_task(std::string task, HandlerOptions options = {});
  // add_observer makes `observer` receive every job event of this worker (job_events.hpp). Must
  // be called before start().
  void add_observer(std::shared_ptr<JobObserver> observer);

  // start launches the threads; calling it again is a no-op.
  void start();
  // stop stops reserving, returns the jobs not started, and waits up to `grace`
  // (WorkerOptions::grace when negative) for in-flight jobs. Past it their tokens say shutdown:
  // in process mode the busy children are stopped first, then their jobs go back to the queue;
  // in thread mode a job goes back when its handler gives up, and stays leased while it does
  // not (StopReport::clean). Safe to call twice or before start. The destructor waits for
  // handlers still busy.
  StopReport stop(std::chrono::milliseconds grace = std::chrono::milliseconds(-1));
  bool running() const noexcept;

  WorkerStats stats() const;
  const WorkerOptions& options() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// register_builtin_handlers adds the native handlers every worker knows: "cinejobs.noop"
// (returns null), "cinejobs.sleep" (kwargs {"seconds": s}, reports progress, honours cancel) and
// "cinejobs.prune" (kwargs {"history_retention_ms": n}: prunes finished jobs and schedule history).
void register_builtin_handlers(Worker& worker);

}  // namespace cinejobs
