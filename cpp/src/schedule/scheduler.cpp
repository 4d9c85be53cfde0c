#include "cinejobs/scheduler.hpp"

#include <algorithm>
#include <condition_variable>
#include <set>

#include "cinejobs/errors.hpp"
#include "cinejobs/log.hpp"

namespace cinejobs {

Schedule prune_schedule(const SchedulerOptions& options) {
  Schedule s;
  s.name = "cinejobs.prune";
  s.task = "cinejobs.prune";
  s.queue = options.prune_queue;
  s.kwargs =
      "{\"history_retention_ms\": " + std::to_string(options.history_retention.count()) + "}";
  s.timing = ScheduleTiming::every(options.prune_every);
  s.max_attempts = 1;
  return s;  // missed prunes coalesce into one
}

Scheduler::Scheduler(std::shared_ptr<Broker> broker, std::vector<Schedule> schedules,
                     SchedulerOptions options)
    : broker_(std::move(broker)), schedules_(std::move(schedules)), options_(std::move(options)) {
  if (options_.prune_every.count() > 0) schedules_.push_back(prune_schedule(options_));
  std::set<std::string> names;
  for (const Schedule& s : schedules_) {
    if (s.name.empty()) throw ConfigError("a schedule needs a name (task '" + s.task + "')");
    if (s.task.empty()) throw ConfigError("schedule '" + s.name + "' names no task");
    if (!names.insert(s.name).second) {
      throw ConfigError("two schedules are named '" + s.name + "': schedule names must differ");
    }
  }
  cursors_.resize(schedules_.size());
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  if (thread_.joinable()) return;
  started_at_ = now_ms();
  thread_ = std::jthread([this](std::stop_token stop) { run(std::move(stop)); });
}

void Scheduler::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  thread_.join();
}

bool Scheduler::running() const noexcept { return thread_.joinable(); }

std::string Scheduler::last_error() const {
  std::lock_guard lock(error_mutex_);
  return last_error_;
}

void Scheduler::load_cursor(std::size_t i, EpochMs now) {
  Cursor& c = cursors_[i];
  if (c.loaded) return;
  const std::optional<ScheduleState> state = broker_->schedule_state(schedules_[i].name);
  // Never ticked: start from now, so ticks before this scheduler existed are not misfires;
  // but a one-off instant that passed unrun is a misfire, left to the policy's grace.
  c.last = state ? state->last_tick : (started_at_ > 0 ? std::min(started_at_, now) : now);
  if (const auto at = schedules_[i].timing.once_at(); !state && at && *at <= c.last) {
    c.last = *at - 1;
  }
  c.loaded = true;
}

std::vector<TickResult> Scheduler::run_due(EpochMs now) {
  // The cursors belong to the thread while it runs.
  if (thread_.joinable()) {
    throw ConfigError("run_due cannot be called while the scheduler's thread runs: stop() first");
  }
  return offer_due_ticks(now);
}

std::vector<TickResult> Scheduler::offer_due_ticks(EpochMs now) {
  std::vector<TickResult> enqueued;
  for (std::size_t i = 0; i < schedules_.size(); ++i) {
    load_cursor(i, now);
    const Schedule& s = schedules_[i];
    Cursor& c = cursors_[i];
    for (const EpochMs tick : due_ticks(s.timing, c.last, now, s.misfire)) {
      TickEnqueue offer;
      offer.schedule = s.name;
      offer.tick = tick;
      offer.next_tick = s.timing.next_after(tick).value_or(0);
      Job& job = offer.job;
      job.task = s.task;
      job.queue = s.queue;
      job.args = s.args;
      job.kwargs = s.kwargs;
      job.priority = s.priority;
      job.max_attempts = s.max_attempts;
      job.timeout_ms = s.timeout_ms;
      job.run_at = tick;
      job.unique_key = tick_unique_key(s.name, tick);
      TickResult result = broker_->enqueue_tick(offer);
      // Another scheduler may have recorded later ticks; never offer anything before them.
      c.last = std::max(c.last, result.enqueued ? tick : result.last_tick);
      if (result.enqueued) enqueued.push_back(std::move(result));
    }
    // Every tick up to now was offered or dropped by the policy: none is left behind.
    c.last = std::max(c.last, now);
  }
  return enqueued;
}

EpochMs Scheduler::next_wake(EpochMs now) const {
  EpochMs wake = now + options_.max_sleep.count();
  for (std::size_t i = 0; i < schedules_.size(); ++i) {
    if (const auto next = schedules_[i].timing.next_after(cursors_[i].last)) {
      wake = std::min(wake, std::max(*next, now));
    }
  }
  return wake;
}

void Scheduler::run(std::stop_token stop) {
  std::mutex mutex;
  std::condition_variable_any cv;
  while (!stop.stop_requested()) {
    EpochMs wake = now_ms() + options_.max_sleep.count();
    try {
      const EpochMs now = now_ms();
      offer_due_ticks(now);
      wake = next_wake(now);
      std::lock_guard lock(error_mutex_);
      last_error_.clear();
    } catch (const std::exception& e) {
      // A broker that is down now may be back later: keep the thread, report, retry.
      std::lock_guard lock(error_mutex_);
      if (last_error_ != e.what()) log(LogLevel::kWarning, "scheduler", e.what());
      last_error_ = e.what();
    }
    std::unique_lock lock(mutex);
    const auto deadline = std::chrono::system_clock::time_point(std::chrono::milliseconds(wake));
    cv.wait_until(lock, stop, deadline, [] { return false; });
  }
}

}  // namespace cinejobs
