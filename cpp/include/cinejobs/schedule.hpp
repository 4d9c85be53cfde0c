// Schedule: what a scheduler enqueues and when. A schedule names a task with its arguments and a
// timing: a cron expression read in a time zone, a fixed interval, or one instant. Interval ticks
// are multiples of the interval counted from a fixed anchor (the Unix epoch unless given), so
// every scheduler process computes the same instants without talking to the others. The misfire
// policy says what to do with ticks that passed while no scheduler ran.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cinejobs/cron.hpp"
#include "cinejobs/job.hpp"

namespace cinejobs {

struct CronTiming {
  CronExpression cron;
  TimeZone zone = TimeZone::utc();
};

struct IntervalTiming {
  std::chrono::milliseconds every{0};
  EpochMs anchor = 0;  // ticks are anchor + k * every
};

struct OnceTiming {
  EpochMs at = 0;
};

// ScheduleTiming: when a schedule ticks.
class ScheduleTiming {
 public:
  // Throw ConfigError for an interval that is not positive, or an expression or zone that is
  // not valid (cron: the message names the field).
  static ScheduleTiming cron(std::string_view expression, std::string_view zone = "UTC");
  static ScheduleTiming every(std::chrono::milliseconds interval, EpochMs anchor = 0);
  static ScheduleTiming once(EpochMs at);

  // next_after returns the first tick strictly after `after`; nullopt when none is left.
  std::optional<EpochMs> next_after(EpochMs after) const;
  // once_at is the instant of a one-off timing (nullopt for cron and interval timings).
  std::optional<EpochMs> once_at() const;
  // describe returns the spec as users wrote it: "cron 0 2 * * * (Europe/Paris)", "every 10s",
  // "once at 1700000000000".
  std::string describe() const;

 private:
  explicit ScheduleTiming(std::variant<CronTiming, IntervalTiming, OnceTiming> timing)
      : timing_(std::move(timing)) {}
  std::variant<CronTiming, IntervalTiming, OnceTiming> timing_;
};

// MisfirePolicy: what a scheduler does with ticks that came while no scheduler ran (or ran too
// late), found when it starts or catches up.
// - Ticks later than `grace` are dropped (no limit when unset).
// - Of those left, `catch_up` = 0 coalesces them into one run (the latest tick); catch_up = N
//   enqueues the latest N, oldest first, each as its own job.
// A tick on time (found less than `grace` after it) always runs.
struct MisfirePolicy {
  std::optional<std::chrono::milliseconds> grace;
  std::size_t catch_up = 0;
};

struct Schedule {
  std::string name;  // unique among schedules; part of every tick's unique key
  std::string task;
  std::string args = "[]";    // JSON array text
  std::string kwargs = "{}";  // JSON object text
  std::string queue = "default";
  int priority = 0;
  int max_attempts = 3;
  std::int64_t timeout_ms = 0;
  ScheduleTiming timing = ScheduleTiming::every(std::chrono::minutes(1));
  MisfirePolicy misfire;
};

// due_ticks returns the ticks of `timing` after `last` and at or before `now` that `policy`
// says to enqueue, oldest first. `last` is the last tick enqueued (by any scheduler).
std::vector<EpochMs> due_ticks(const ScheduleTiming& timing, EpochMs last, EpochMs now,
                               const MisfirePolicy& policy);

// tick_unique_key is the job's unique key for one tick: "schedule:<name>:<tick epoch ms>".
std::string tick_unique_key(const std::string& schedule, EpochMs tick);

}  // namespace cinejobs
