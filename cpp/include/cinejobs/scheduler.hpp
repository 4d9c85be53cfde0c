// Scheduler: enqueues the ticks of schedules, in its own thread. Each tick goes to the broker's
// enqueue_tick, which enqueues it only when it is later than the schedule's last recorded tick,
// in one atomic step; so any number of schedulers (threads, processes, machines) may run over
// one broker and every tick is enqueued exactly once. Ticks are computed from the schedule's
// timing, never from when a scheduler happened to wake, so all schedulers agree on them.
// After downtime (no scheduler running), a starting scheduler applies each schedule's
// MisfirePolicy to the ticks it missed. A schedule that never ticked starts from the
// scheduler's start: earlier ticks are not missed ones (but a one-off instant that passed unrun
// is, and runs within the policy's grace).
// The built-in "cinejobs.prune" schedule (on by default) enqueues the native cinejobs.prune
// job, which deletes finished jobs past the broker's result_ttl and schedule history past
// history_retention.
// Costs: one enqueue_tick per tick per scheduler (the losers' calls are cheap reads), and one
// schedule_state read per schedule when the scheduler starts.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/schedule.hpp"

namespace cinejobs {

struct SchedulerOptions {
  // Longest sleep between looks at the clock, also the retry delay after a broker error.
  std::chrono::milliseconds max_sleep = std::chrono::seconds(1);
  // Schedule history older than this is pruned by the built-in prune job.
  std::chrono::milliseconds history_retention = std::chrono::hours(24 * 7);
  // The built-in prune schedule's interval; zero leaves the built-in schedule out.
  std::chrono::milliseconds prune_every = std::chrono::hours(1);
  std::string prune_queue = "default";
};

// prune_schedule returns the built-in schedule that enqueues cinejobs.prune.
Schedule prune_schedule(const SchedulerOptions& options);

class Scheduler {
 public:
  // Throws ConfigError for two schedules with one name or a schedule with an empty name or task.
  Scheduler(std::shared_ptr<Broker> broker, std::vector<Schedule> schedules,
            SchedulerOptions options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // start launches the thread; calling it again is a no-op.
  void start();
  // stop wakes the thread and joins it. Safe to call twice or before start.
  void stop();
  bool running() const noexcept;

  // run_due offers every tick due at `now` to the broker, as the thread does each time it
  // wakes, and returns the ticks this call enqueued. For callers without the thread (tests,
  // one-shot runs); throws ConfigError while the thread runs.
  std::vector<TickResult> run_due(EpochMs now);

  const std::vector<Schedule>& schedules() const noexcept { return schedules_; }
  // last_error is the message of the last broker error the thread met (empty when none).
  std::string last_error() const;

 private:
  struct Cursor {
    bool loaded = false;
    EpochMs last = 0;  // the last tick recorded for the schedule, as far as this scheduler knows
  };
  void load_cursor(std::size_t i, EpochMs now);
  std::vector<TickResult> offer_due_ticks(EpochMs now);
  EpochMs next_wake(EpochMs now) const;
  void run(std::stop_token stop);

  std::shared_ptr<Broker> broker_;
  std::vector<Schedule> schedules_;
  SchedulerOptions options_;
  std::vector<Cursor> cursors_;
  EpochMs started_at_ = 0;
  mutable std::mutex error_mutex_;
  std::string last_error_;
  std::jthread thread_;
};

}  // namespace cinejobs
