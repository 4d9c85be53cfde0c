#include "cinejobs/worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "cinejobs/errors.hpp"
#include "cinejobs/log.hpp"
#include "cinejobs/process_pool.hpp"

namespace cinejobs {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void log_warning(const std::string& message) { log(LogLevel::kWarning, "worker", message); }

std::string default_worker_id() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::random_device device;
  char suffix[8];
  std::snprintf(suffix, sizeof(suffix), "%04x", device() & 0xFFFF);
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + suffix;
}

milliseconds retry_delay(const HandlerOptions& options, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double delay = static_cast<double>(options.retry_backoff.count());
  for (int i = 1; i < attempt && delay < static_cast<double>(options.retry_backoff_max.count());
       ++i) {
    delay *= 2;
  }
  delay = std::min(delay, static_cast<double>(options.retry_backoff_max.count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  return milliseconds(static_cast<std::int64_t>(delay * jitter(rng)));
}

// Sleeps for `duration` unless `stop` is requested first.
void sleep_for(std::stop_token stop, milliseconds duration) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, duration, [] { return false; });
}

}  // namespace

HandlerOutcome run_handler(const Handler& handler, JobContext& ctx) noexcept {
  HandlerOutcome out;
  try {
    out.result = handler(ctx);
    if (out.result.empty()) out.result = "null";
  } catch (const HandlerError& e) {
    out.failure = JobFailure{e.type(), e.message(), e.traceback()};
    out.retry_at = e.retry_at();
    out.action = e.action();
  } catch (const JobTimeout& e) {
    out.failure = JobFailure{"JobTimeout", e.what(), ""};
  } catch (const JobCancelled& e) {
    out.failure = JobFailure{"JobCancelled", e.what(), ""};
  } catch (const std::exception& e) {
    out.failure = JobFailure{"Error", e.what(), ""};
  } catch (...) {
    out.failure = JobFailure{"Error", "the handler threw a non-standard exception", ""};
  }
  if (!out.failure && ctx.stop_reason() == StopReason::kTimeout) {
    out.failure = JobFailure{
        "JobTimeout", "job ran past its timeout of " + std::to_string(ctx.job().timeout_ms) + " ms",
        ""};
  }
  return out;
}

std::string_view to_string(JobEventKind kind) noexcept {
  switch (kind) {
    case JobEventKind::kStarted:
      return "started";
    case JobEventKind::kSucceeded:
      return "succeeded";
    case JobEventKind::kFailed:
      return "failed";
    case JobEventKind::kRetried:
      return "retried";
    case JobEventKind::kCancelled:
      return "cancelled";
    case JobEventKind::kSnoozed:
      return "snoozed";
    case JobEventKind::kReleased:
      return "released";
  }
  return "started";
}

struct Worker::State {
  struct Registered {
    Handler handler;  // empty for a task run in a child process
    HandlerOptions options;
    bool in_child = false;
    milliseconds hard_timeout{0};  // in_child: the task's own, else the worker's
  };
  // held is keyed by delivery (id and lease token), not by job id: a retry can be reserved
  // again while the acker is still settling the attempt before it, and the two must not be
  // taken for one (the new attempt's outcome would be refused and the job run a third time).
  static std::string delivery(const std::string& id, std::uint64_t lease_token) {
    std::string key = id;
    key += '#';
    key += std::to_string(lease_token);
    return key;
  }
  static std::string delivery(const Job& job) { return delivery(job.id, job.lease_token); }
  static std::string delivery(const LeaseRef& ref) { return delivery(ref.id, ref.lease_token); }

  // A job held by this worker, from reserve until its outcome is stored.
  struct Held {
    std::shared_ptr<JobContext> ctx;
    Clock::time_point deadline = Clock::time_point::max();  // soft timeout
    bool started = false;
    bool finished = false;                // its outcome is buffered for the acker
    Clock::time_point handler_started{};  // set when its handler starts (kStarted)
  };

  State(std::shared_ptr<Broker> b, WorkerOptions o) : broker(std::move(b)), options(std::move(o)) {
    if (!broker) throw ConfigError("a worker needs a broker");
    if (options.queues.empty()) throw ConfigError("a worker needs at least one queue");
    if (options.concurrency < 1) {
      throw ConfigError("worker concurrency must be at least 1, got " +
                        std::to_string(options.concurrency));
    }
    for (const auto& [queue, limit] : options.queue_concurrency) {
      if (limit < 1) throw ConfigError("concurrency of queue '" + queue + "' must be at least 1");
      if (std::find(options.queues.begin(), options.queues.end(), queue) == options.queues.end()) {
        throw ConfigError("queue_concurrency names queue '" + queue +
                          "' which the worker does not consume");
      }
    }
    if (options.lease < milliseconds(10)) throw ConfigError("worker lease must be at least 10 ms");
    if (options.max_batch == 0) options.max_batch = 1;
    if (options.heartbeat <= milliseconds::zero()) {
      options.heartbeat = std::min<milliseconds>(options.lease / 3, std::chrono::seconds(1));
    }
    if (options.maintenance_interval <= milliseconds::zero()) {
      options.maintenance_interval = options.lease / 2;
    }
    if (options.worker_id.empty()) options.worker_id = default_worker_id();
    if (options.processes < 0) {
      throw ConfigError("processes must be 0 (thread mode) or more, got " +
                        std::to_string(options.processes));
    }
    if (options.processes == 0) {
      if (options.hard_timeout > milliseconds::zero()) {
        throw ConfigError(hard_timeout_refusal("the worker's hard_timeout"));
      }
      if (options.max_jobs_per_child > 0 || options.max_memory_per_child_mb > 0) {
        throw ConfigError(
            "max_jobs_per_child and max_memory_per_child recycle child processes: they need "
            "process mode (processes >= 1, cinejobs worker --processes N)");
      }
      slots = options.concurrency;
    } else {
      ProcessPoolOptions po;
      po.processes = options.processes;
      po.concurrency = options.concurrency;
      po.command = options.child_command;
      po.kill_grace = options.kill_grace;
      po.max_jobs = options.max_jobs_per_child;
      po.max_memory_mb = options.max_memory_per_child_mb;
      process_pool = std::make_shared<ProcessPool>(std::move(po));
      slots = options.processes * options.concurrency;
    }
  }

  static std::string hard_timeout_refusal(const std::string& what) {
    return what +
           " needs process mode (cinejobs worker --processes N, or processes=N): a thread "
           "cannot be killed, so a hard time limit is enforced by killing a child process";
  }

  int slots = 0;                              // the most jobs held at once
  std::shared_ptr<ProcessPool> process_pool;  // process mode only

  std::shared_ptr<Broker> broker;
  WorkerOptions options;
  std::unordered_map<std::string, Registered> handlers;
  std::vector<std::shared_ptr<JobObserver>> observers;  // fixed once started

  std::mutex lifecycle_mutex;
  bool started = false;
  bool stopped = false;

  // Everything below `mutex` guards: the held jobs, the run queue and the outcome buffers.
  std::mutex mutex;
  std::condition_variable_any slots_cv;      // a slot was freed (dispatcher waits)
  std::condition_variable_any work_cv;       // a job is ready to run (handler threads wait)
  std::condition_variable_any outcomes_cv;   // outcomes to store (acker waits)
  std::condition_variable_any heartbeat_cv;  // a job with a timeout started
  std::condition_variable_any idle_cv;       // a held job was settled (stop waits)
  std::unordered_map<std::string, Held> held;
  std::map<std::string, int> held_by_queue;
  std::deque<std::shared_ptr<JobContext>> ready;
  std::vector<Ack> acks;
  std::vector<Fail> fails;
  std::vector<Snooze> snoozes;
  std::vector<LeaseRef> releases;       // handlers that gave up on shutdown
  std::vector<std::string> settling;    // deliveries whose outcome is buffered
  std::uint64_t deadlines_changed = 0;  // bumped when a job with a timeout starts
  std::size_t active_handlers = 0;      // handler threads inside a job right now
  bool no_more_work = false;
  bool outcomes_closed = false;
  bool draining = false;  // stopped past the grace with handlers still running

  std::atomic<std::uint64_t> n_reserved{0}, n_succeeded{0}, n_failed{0}, n_retried{0},
      n_cancelled{0}, n_released{0}, n_lost{0}, n_snoozed{0};

  std::jthread dispatcher, acker, heartbeat;
  std::vector<std::jthread> pool;

  // ---- dispatcher: reserve no more than free slots ----

  std::size_t free_slots_locked() const { return static_cast<std::size_t>(slots) - held.size(); }

  std::vector<Job> reserve_up_to(std::size_t free) {
    std::vector<Job> jobs;
    auto take = [&](std::vector<std::string> queues, std::size_t n) {
      if (n == 0 || queues.empty()) return;
      ReserveParams params{std::move(queues), std::min(n, options.max_batch), options.lease,
                           options.worker_id};
      for (Job& job : broker->reserve(params)) jobs.push_back(std::move(job));
    };
    if (options.queue_concurrency.empty()) {
      take(options.queues, free);
      return jobs;
    }
    std::vector<std::string> shared;
    for (const auto& queue : options.queues) {
      auto limit = options.queue_concurrency.find(queue);
      if (limit == options.queue_concurrency.end()) {
        shared.push_back(queue);
        continue;
      }
      std::size_t queue_free = 0;
      {
        std::lock_guard lock(mutex);
        const int in_use = held_by_queue[queue];
        queue_free = limit->second > in_use ? static_cast<std::size_t>(limit->second - in_use) : 0;
      }
      take({queue}, std::min(free - jobs.size(), queue_free));
    }
    take(std::move(shared), free - jobs.size());
    return jobs;
  }

  void dispatch_loop(std::stop_token stop) {
    milliseconds backoff(0);
    while (!stop.stop_requested()) {
      std::size_t free = 0;
      {
        std::unique_lock lock(mutex);
        slots_cv.wait(lock, stop, [&] { return free_slots_locked() > 0; });
        if (stop.stop_requested()) return;
        free = free_slots_locked();
      }
      std::vector<Job> jobs;
      try {
        jobs = reserve_up_to(free);
        backoff = milliseconds(0);
      } catch (const std::exception& e) {
        backoff = std::clamp(backoff * 2, milliseconds(100), milliseconds(5000));
        log_warning(std::string("reserve failed, retrying in ") + std::to_string(backoff.count()) +
                    " ms: " + e.what());
        sleep_for(stop, backoff);
        continue;
      }
      if (jobs.empty()) {
        broker->wait_for_jobs(options.queues, options.poll_interval, stop);
        continue;
      }
      n_reserved += jobs.size();
      {
        std::lock_guard lock(mutex);
        for (Job& job : jobs) {
          auto ctx = std::make_shared<JobContext>(std::move(job), broker);
          held_by_queue[ctx->job().queue] += 1;
          held.emplace(delivery(ctx->job()), Held{ctx});
          ready.push_back(std::move(ctx));
        }
      }
      // One wake-up per job: waking every handler thread for each job costs more than the job.
      for (std::size_t i = 0; i < jobs.size(); ++i) work_cv.notify_one();
    }
  }

  // ---- handler threads ----

  void handler_loop() {
    for (;;) {
      std::shared_ptr<JobContext> ctx;
      {
        std::unique_lock lock(mutex);
        work_cv.wait(lock, [&] { return !ready.empty() || no_more_work; });
        if (ready.empty()) return;
        ctx = std::move(ready.front());
        ready.pop_front();
        ++active_handlers;
        auto it = held.find(delivery(ctx->job()));
        if (it != held.end()) {
          it->second.started = true;
          if (ctx->job().timeout_ms > 0) {
            it->second.deadline = Clock::now() + milliseconds(ctx->job().timeout_ms);
          }
        }
      }
      if (ctx->job().timeout_ms > 0) {
        {
          std::lock_guard lock(mutex);
          ++deadlines_changed;
        }
        heartbeat_cv.notify_all();
      }
      run(ctx);
      {
        std::lock_guard lock(mutex);
        --active_handlers;
      }
      idle_cv.notify_all();  // stop() waits for handlers to leave, not only for outcomes
    }
  }

  void run(const std::shared_ptr<JobContext>& shared) {
    JobContext& ctx = *shared;
    const Job& job = ctx.job();
    auto handler = handlers.find(job.task);
    if (handler == handlers.end()) {
      settle_failure(ctx,
                     JobFailure{"UnknownTask",
                                "no handler is registered for task '" + job.task +
                                    "' on this worker (is the task's module imported?)",
                                ""},
                     nullptr);
      return;
    }
    const Registered& registered = handler->second;
    if (registered.options.rate_limiter && !take_rate_limit(ctx, registered.options)) return;
    announce_start(ctx);
    if (registered.in_child) {
      // The pool settles the outcome from its own thread when the child answers; this
      // handler thread is free for the next job at once.
      process_pool->submit(shared, registered.hard_timeout,
                           [this, shared, &registered](HandlerOutcome outcome) {
                             settle(*shared, registered.options, std::move(outcome));
                           });
      return;
    }
    settle(ctx, registered.options, run_handler(registered.handler, ctx));
  }

  // settle hands a handler's outcome to the acker: a result, a snooze, a retry or a failure.
  void settle(JobContext& ctx, const HandlerOptions& options, HandlerOutcome outcome) {
    const Job& job = ctx.job();
    if (outcome.failure && outcome.action == FailureAction::kSnooze &&
        ctx.stop_reason() == StopReason::kNone) {
      snooze(job, outcome.retry_at.value_or(now_ms()));
    } else if (outcome.failure) {
      settle_failure(ctx, std::move(*outcome.failure), &options, outcome.retry_at, outcome.action);
    } else {
      std::lock_guard lock(mutex);
      if (!accept_outcome_locked(job)) return;
      acks.push_back(Ack{LeaseRef{job.id, job.lease_token}, std::move(outcome.result)});
      settling.push_back(delivery(job));
      outcomes_cv.notify_one();
    }
  }

  // ---- job events ----

  void notify(const JobEvent& event) {
    for (const auto& observer : observers) observer->on_job_event(event);
  }

  static JobEvent event_for(JobEventKind kind, const Job& job) {
    JobEvent e;
    e.kind = kind;
    e.id = job.id;
    e.task = job.task;
    e.queue = job.queue;
    e.attempt = job.attempt;
    e.max_attempts = job.max_attempts;
    e.at = now_ms();
    return e;
  }

  void announce_start(JobContext& ctx) {
    {
      std::lock_guard lock(mutex);
      auto it = held.find(delivery(ctx.job()));
      if (it != held.end()) it->second.handler_started = Clock::now();
    }
    if (!observers.empty()) notify(event_for(JobEventKind::kStarted, ctx.job()));
  }

  // outcome_events_locked builds the end events of a batch the broker has just stored, while
  // the jobs are still held (their documents and start times are read from `held`).
  std::vector<JobEvent> outcome_events_locked(const std::vector<Ack>& ack_batch,
                                              const std::vector<Fail>& fail_batch,
                                              const std::vector<Snooze>& snooze_batch,
                                              const std::vector<LeaseRef>& release_batch) const {
    std::vector<JobEvent> events;
    if (observers.empty()) return events;
    const auto now = Clock::now();
    auto add = [&](JobEventKind kind, const LeaseRef& lease) -> JobEvent* {
      auto it = held.find(delivery(lease));
      if (it == held.end()) return nullptr;
      JobEvent& e = events.emplace_back(event_for(kind, it->second.ctx->job()));
      if (it->second.handler_started != Clock::time_point{}) {
        e.duration =
            std::chrono::duration_cast<std::chrono::microseconds>(now - it->second.handler_started);
      }
      return &e;
    };
    for (const Ack& a : ack_batch) add(JobEventKind::kSucceeded, a.lease);
    for (const Fail& f : fail_batch) {
      JobEventKind kind = f.retry_at || f.retried_by_handler      ? JobEventKind::kRetried
                          : f.final_state == JobState::kCancelled ? JobEventKind::kCancelled
                                                                  : JobEventKind::kFailed;
      if (JobEvent* e = add(kind, f.lease)) {
        e->error = f.error;
        e->retry_at = f.retry_at.value_or(0);
      }
    }
    for (const Snooze& s : snooze_batch) {
      if (JobEvent* e = add(JobEventKind::kSnoozed, s.lease)) e->retry_at = s.run_at;
    }
    for (const LeaseRef& r : release_batch) add(JobEventKind::kReleased, r);
    return events;
  }

  // take_rate_limit takes one unit of the task's limit and returns true, or settles the job and
  // returns false: snoozed when the limit refuses (the attempt is not counted and the slot is
  // freed as soon as the acker stores it), failed when the key function throws.
  bool take_rate_limit(JobContext& ctx, const HandlerOptions& options) {
    const Job& job = ctx.job();
    std::string key;
    if (options.rate_limit_key) {
      try {
        key = options.rate_limit_key(job);
      } catch (const HandlerError& e) {
        settle_failure(ctx, JobFailure{e.type(), e.message(), e.traceback()}, &options);
        return false;
      } catch (const std::exception& e) {
        settle_failure(ctx, JobFailure{"Error", e.what(), ""}, &options);
        return false;
      }
    }
    milliseconds delay(0);
    try {
      const RateDecision decision = options.rate_limiter->try_acquire(1, key);
      if (decision.allowed) return true;
      delay = options.rate_limiter->snooze_delay(decision.wait);
    } catch (const std::exception& e) {
      // Running anyway could break the limit, and failing would spend an attempt on nothing.
      log_warning("the rate limit of task '" + job.task +
                  "' cannot be checked, holding the job back for 1 s: " + e.what());
      delay = std::chrono::seconds(1);
    }
    snooze(job, now_ms() + delay.count());
    return false;
  }

  // snooze settles the job as held back until run_at, its attempt not counted.
  void snooze(const Job& job, EpochMs run_at) {
    std::lock_guard lock(mutex);
    if (!accept_outcome_locked(job)) return;
    snoozes.push_back(Snooze{LeaseRef{job.id, job.lease_token}, run_at});
    settling.push_back(delivery(job));
    outcomes_cv.notify_one();
  }

  // settle_failure decides between retry and a final state; `options` is null when the job
  // cannot succeed on any attempt (unknown task). A handler's `action` other than kRetry
  // decides in its place, unless the job was cancelled.
  void settle_failure(JobContext& ctx, JobFailure error, const HandlerOptions* options,
                      std::optional<EpochMs> retry_at = std::nullopt,
                      FailureAction action = FailureAction::kRetry) {
    const Job& job = ctx.job();
    Fail f{LeaseRef{job.id, job.lease_token}, std::move(error), std::nullopt, JobState::kFailed};
    switch (ctx.stop_reason()) {
      case StopReason::kCancelled:
        f.final_state = JobState::kCancelled;
        break;
      case StopReason::kShutdown: {
        // The worker stopped past its grace and the handler gave up: the job goes back to the
        // queue, its attempt not counted, as if it had never started.
        std::lock_guard lock(mutex);
        if (!accept_outcome_locked(job)) return;
        releases.push_back(LeaseRef{job.id, job.lease_token});
        settling.push_back(delivery(job));
        outcomes_cv.notify_one();
        return;
      }
      case StopReason::kTimeout:
        f.error.type = "JobTimeout";
        [[fallthrough]];
      default:
        if (action == FailureAction::kCancel) {
          f.final_state = JobState::kCancelled;
        } else if (action == FailureAction::kRetried) {
          f.retried_by_handler = true;
        } else if (action != FailureAction::kFail && options != nullptr &&
                   job.attempt < job.max_attempts) {
          f.retry_at = retry_at ? *retry_at : now_ms() + retry_delay(*options, job.attempt).count();
        }
    }
    std::lock_guard lock(mutex);
    if (!accept_outcome_locked(job)) return;
    fails.push_back(std::move(f));
    settling.push_back(delivery(job));
    outcomes_cv.notify_one();
  }

  // An outcome is stored only while its job is held: a stop past its grace gives up the jobs
  // still running and returns them to the queue, and their late outcomes must not land.
  bool accept_outcome_locked(const Job& job) {
    auto it = held.find(delivery(job));
    if (outcomes_closed || it == held.end()) return false;
    it->second.finished = true;
    return true;
  }

  // ---- acker: store outcomes in batches ----

  void ack_loop() {
    for (;;) {
      std::vector<Ack> ack_batch;
      std::vector<Fail> fail_batch;
      std::vector<Snooze> snooze_batch;
      std::vector<LeaseRef> release_batch;
      std::vector<std::string> ids;
      {
        std::unique_lock lock(mutex);
        outcomes_cv.wait(lock, [&] { return !settling.empty() || outcomes_closed; });
        if (settling.empty()) return;
        ack_batch.swap(acks);
        fail_batch.swap(fails);
        snooze_batch.swap(snoozes);
        release_batch.swap(releases);
        ids.swap(settling);
      }
      store_outcomes(ack_batch, fail_batch, snooze_batch);
      release(release_batch);
      std::vector<JobEvent> events;
      {
        std::lock_guard lock(mutex);
        events = outcome_events_locked(ack_batch, fail_batch, snooze_batch, release_batch);
        for (const auto& id : ids) forget_locked(id);
      }
      for (const JobEvent& e : events) notify(e);
      slots_cv.notify_one();  // only the dispatcher waits for slots
      idle_cv.notify_all();
      bool done = false;
      {
        std::lock_guard lock(mutex);
        done = draining && held.empty();
      }
      if (done) {
        heartbeat_cv.notify_all();  // the last stubborn handler returned: nothing to renew
        return;
      }
    }
  }

  void store_outcomes(const std::vector<Ack>& ack_batch, const std::vector<Fail>& fail_batch,
                      const std::vector<Snooze>& snooze_batch) {
    // A store that fails is retried: the outcome is the only record of work done. If the
    // broker stays away, the lease expires and the job runs again (at least once).
    for (milliseconds backoff(50);; backoff = std::min(backoff * 2, milliseconds(2000))) {
      try {
        const std::size_t acked = broker->ack(ack_batch);
        // Counted at once: whoever saw a job succeed may read the stats next.
        n_succeeded += acked;
        const std::size_t failed = broker->fail(fail_batch);
        const std::size_t snoozed = broker->snooze(snooze_batch);
        n_snoozed += snoozed;
        n_lost += (ack_batch.size() - acked) + (fail_batch.size() - failed) +
                  (snooze_batch.size() - snoozed);
        for (const Fail& f : fail_batch) {
          if (f.retry_at || f.retried_by_handler) {
            ++n_retried;
          } else if (f.final_state == JobState::kCancelled) {
            ++n_cancelled;
          } else {
            ++n_failed;
          }
        }
        return;
      } catch (const std::exception& e) {
        bool give_up = false;
        {
          std::lock_guard lock(mutex);
          give_up = outcomes_closed && ++tries_after_close > 3;
        }
        if (give_up) {
          log_warning(std::string("giving up storing job outcomes while stopping (their leases "
                                  "will expire and the jobs run again): ") +
                      e.what());
          return;
        }
        log_warning(std::string("storing job outcomes failed, retrying: ") + e.what());
        std::this_thread::sleep_for(backoff);
      }
    }
  }
  int tries_after_close = 0;  // guarded by mutex

  void forget_locked(const std::string& key) {
    auto it = held.find(key);
    if (it == held.end()) return;
    auto q = held_by_queue.find(it->second.ctx->job().queue);
    if (q != held_by_queue.end() && --q->second == 0) held_by_queue.erase(q);
    held.erase(it);
  }

  // ---- heartbeat: leases, timeouts, cancel requests, recovery ----

  void heartbeat_loop(std::stop_token stop) {
    auto next_extend = Clock::now() + options.heartbeat;
    auto next_maintenance = Clock::now();
    auto next_prune = Clock::now();
    while (!stop.stop_requested()) {
      std::vector<std::shared_ptr<JobContext>> running;
      {
        std::unique_lock lock(mutex);
        auto wake = std::min(next_extend, next_maintenance);
        for (const auto& [id, h] : held) wake = std::min(wake, h.deadline);
        const std::uint64_t seen = deadlines_changed;
        heartbeat_cv.wait_until(lock, stop, wake, [&] {
          return deadlines_changed != seen || (draining && held.empty());
        });
        // After an unclean stop the heartbeat lives only for the jobs still running.
        if (stop.stop_requested() || (draining && held.empty())) return;
        const auto now = Clock::now();
        for (auto& [id, h] : held) {
          if (h.deadline <= now) {
            h.ctx->request_stop(StopReason::kTimeout);
            h.deadline = Clock::time_point::max();
          }
        }
        if (now >= next_extend) {
          running.reserve(held.size());
          for (const auto& [id, h] : held) running.push_back(h.ctx);
        }
      }
      const auto now = Clock::now();
      try {
        if (now >= next_extend) {
          next_extend = now + options.heartbeat;
          extend_leases(running);
        }
        if (now >= next_maintenance) {
          next_maintenance = now + options.maintenance_interval;
          broker->recover_expired();
          if (now >= next_prune) {
            next_prune = now + std::chrono::minutes(1);
            broker->prune_finished();
          }
        }
      } catch (const std::exception& e) {
        log_warning(std::string("heartbeat failed: ") + e.what());
      }
    }
  }

  void extend_leases(const std::vector<std::shared_ptr<JobContext>>& running) {
    if (running.empty()) return;
    std::vector<LeaseRef> leases;
    leases.reserve(running.size());
    for (const auto& ctx : running) leases.push_back(LeaseRef{ctx->id(), ctx->job().lease_token});
    const auto results = broker->extend(leases, options.lease);
    for (std::size_t i = 0; i < results.size() && i < running.size(); ++i) {
      if (!results[i].owned) {
        running[i]->request_stop(StopReason::kLeaseLost);
      } else if (results[i].cancel_requested) {
        running[i]->request_stop(StopReason::kCancelled);
      }
    }
  }

  // ---- stop ----

  // stop: stop reserving; return the jobs not started; give the running ones `grace`. Past it,
  // their tokens say shutdown. In process mode the children still busy are then stopped (killed
  // past kill_grace) before their jobs go back to the queue, so no job is handed to another
  // worker while a handler still runs it. In thread mode a handler cannot be killed: a job
  // whose handler honours the token goes back to the queue when it returns; one that does not
  // stays leased, its lease renewed, until its handler returns (its outcome is stored) or the
  // process exits (the lease then expires, as after a kill). The report says so (clean false).
  StopReport stop(milliseconds grace) {
    StopReport report;
    if (grace < milliseconds::zero()) grace = options.grace;
    const std::uint64_t released_before = n_released;
    dispatcher.request_stop();
    if (dispatcher.joinable()) dispatcher.join();

    std::vector<LeaseRef> unstarted;
    std::vector<JobEvent> released;
    std::size_t in_flight = 0;
    {
      std::lock_guard lock(mutex);
      for (const auto& ctx : ready) {
        unstarted.push_back({ctx->id(), ctx->job().lease_token});
        released.push_back(event_for(JobEventKind::kReleased, ctx->job()));
      }
      for (const auto& ref : unstarted) forget_locked(delivery(ref));
      ready.clear();
      no_more_work = true;
      in_flight = held.size();
    }
    work_cv.notify_all();
    release(unstarted);
    if (!observers.empty()) {
      for (const JobEvent& e : released) notify(e);
    }

    std::size_t overdue = 0;
    {
      std::unique_lock lock(mutex);
      idle_cv.wait_for(lock, grace, [&] { return held.empty(); });
      for (const auto& [id, h] : held) {
        if (h.finished) continue;
        h.ctx->request_stop(StopReason::kShutdown);
        ++overdue;
      }
    }
    // Children busy past the grace are stopped now, and their handler threads return with the
    // jobs cancelled by shutdown, which settle_failure sends back to the queue.
    if (process_pool) process_pool->stop();
    // Handlers that honour their token return soon; their jobs go back to the queue. A second
    // of grace for that, or kill_grace in process mode, where the children are gone already.
    bool idle = false;
    {
      std::unique_lock lock(mutex);
      idle = idle_cv.wait_for(lock, std::max(options.kill_grace, milliseconds(1000)),
                              [&] { return held.empty() && active_handlers == 0; });
    }
    report.finished = in_flight - overdue;
    if (idle) {
      finish();
    } else {
      std::lock_guard lock(mutex);
      draining = true;  // the heartbeat and the acker end once the last of them is settled
    }
    report.returned = n_released - released_before;
    report.clean = idle;
    return report;
  }

  // finish ends the threads once no handler runs: the heartbeat, then the acker after it has
  // stored what is buffered. Called by stop() when idle, else by the destructor once the last
  // stubborn handler returned. Safe twice.
  void finish() {
    for (auto& t : pool) {
      if (t.joinable()) t.join();
    }
    heartbeat.request_stop();
    if (heartbeat.joinable()) heartbeat.join();
    {
      std::lock_guard lock(mutex);
      outcomes_closed = true;  // the acker stores what is buffered, then ends
    }
    outcomes_cv.notify_all();
    if (acker.joinable()) acker.join();
  }

  void release(const std::vector<LeaseRef>& leases) {
    if (leases.empty()) return;
    try {
      n_released += broker->release(leases);
    } catch (const std::exception& e) {
      log_warning(std::string("returning jobs to the queue failed (their leases will expire): ") +
                  e.what());
    }
  }
};

Worker::Worker(std::shared_ptr<Broker> broker, WorkerOptions options)
    : state_(std::make_shared<State>(std::move(broker), std::move(options))) {}

Worker::~Worker() {
  stop();
  // A handler still busy after stop() keeps its job leased until it returns; then its outcome is
  // stored and the threads end.
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->started) state_->finish();
}

void Worker::register_handler(std::string task, Handler handler, HandlerOptions options) {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->started) throw ConfigError("register handlers before starting the worker");
  if (task.empty()) throw ConfigError("a handler needs a task name");
  if (!handler) throw ConfigError("handler for task '" + task + "' is empty");
  if (options.hard_timeout > std::chrono::milliseconds::zero()) {
    throw ConfigError(State::hard_timeout_refusal("hard_timeout of task '" + task + "'") +
                      (state_->process_pool ? " (native handlers run in the supervisor)" : ""));
  }
  state_->handlers[std::move(task)] = State::Registered{std::move(handler), std::move(options)};
}

void Worker::register_child_task(std::string task, HandlerOptions options) {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->started) throw ConfigError("register handlers before starting the worker");
  if (task.empty()) throw ConfigError("a handler needs a task name");
  if (!state_->process_pool) {
    throw ConfigError("task '" + task +
                      "' is to run in a child process, but this worker is in thread mode "
                      "(processes=0)");
  }
  const auto hard = options.hard_timeout > std::chrono::milliseconds::zero()
                        ? options.hard_timeout
                        : state_->options.hard_timeout;
  State::Registered registered{Handler{}, std::move(options), true, hard};
  registered.options.hard_timeout = std::chrono::milliseconds::zero();
  state_->handlers[std::move(task)] = std::move(registered);
}

void Worker::add_observer(std::shared_ptr<JobObserver> observer) {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->started) throw ConfigError("add job observers before starting the worker");
  if (!observer) throw ConfigError("a job observer must not be null");
  state_->observers.push_back(std::move(observer));
}

bool Worker::has_handler(const std::string& task) const { return state_->handlers.contains(task); }

void Worker::start() {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->started) return;
  state_->started = true;
  State* s = state_.get();
  // Children first: they must be ready before jobs are reserved for them, and a child that
  // cannot start (an app that fails to import) fails start() here.
  if (s->process_pool) s->process_pool->start();
  s->pool.reserve(static_cast<std::size_t>(s->slots));
  for (int i = 0; i < s->slots; ++i) {
    s->pool.emplace_back([s] { s->handler_loop(); });
  }
  s->acker = std::jthread([s] { s->ack_loop(); });
  s->heartbeat = std::jthread([s](std::stop_token st) { s->heartbeat_loop(st); });
  s->dispatcher = std::jthread([s](std::stop_token st) { s->dispatch_loop(st); });
}

StopReport Worker::stop(std::chrono::milliseconds grace) {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (!state_->started || state_->stopped) return {};
  state_->stopped = true;
  return state_->stop(grace);
}

bool Worker::running() const noexcept {
  std::lock_guard lock(state_->lifecycle_mutex);
  return state_->started && !state_->stopped;
}

WorkerStats Worker::stats() const {
  WorkerStats s;
  s.reserved = state_->n_reserved;
  s.succeeded = state_->n_succeeded;
  s.failed = state_->n_failed;
  s.retried = state_->n_retried;
  s.cancelled = state_->n_cancelled;
  s.released = state_->n_released;
  s.lost = state_->n_lost;
  s.snoozed = state_->n_snoozed;
  s.slots = static_cast<std::uint64_t>(state_->slots);
  if (state_->process_pool) {
    ProcessPoolStats ps = state_->process_pool->stats();
    s.children = ps.children;
    s.child_restarts = std::move(ps.restarts);
  }
  std::lock_guard lock(state_->mutex);
  s.running = state_->held.size();
  return s;
}

const WorkerOptions& Worker::options() const noexcept { return state_->options; }

}  // namespace cinejobs
