// Metrics: the counters an operator alerts on, counted in C++ where the work happens and written
// in the Prometheus text exposition format (version 0.0.4) by render_metrics. No client library:
// the counts live next to the jobs (no GIL per job), the cinejobs-worker binary serves the same
// text as the Python worker, and there is nothing extra to install.
//
// Two kinds of counters:
// - WorkerMetrics, a JobObserver a worker reports to: jobs by outcome, by task and queue, and a
//   histogram of handler run times by task. One per worker.
// - process-wide counters (the count_* functions) that other parts of the library bump where
//   the thing happens: child process restarts, rate limiter waits, TMDB 429 pauses, batcher
//   items, batches and dead letters. They are noexcept and cost a mutex and a map lookup.
// Counters only go up for the life of the process; Prometheus computes rates from them.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cinejobs/broker.hpp"
#include "cinejobs/job_events.hpp"

namespace cinejobs {

class Worker;

// WorkerMetrics counts one worker's job events (Worker::add_observer):
//   cinejobs_jobs_{started,succeeded,failed,retried,cancelled,snoozed,released}_total{task,queue}
//   cinejobs_jobs_timed_out_total{task,queue}  ends whose error type is JobTimeout (retried or not)
//   cinejobs_jobs_crashed_total{task,queue}    ends whose error type is WorkerCrashed
//   cinejobs_job_duration_seconds{task}        histogram of the ends that ran a handler (a
//                                              nonzero duration), from 1 ms to 10 min
// on_job_event takes one mutex, looks up the task and queue and adds; nothing is allocated
// after a (task, queue) pair is first seen.
class WorkerMetrics : public JobObserver {
 public:
  // The histogram's upper bounds in seconds (+Inf comes on top).
  static constexpr std::array<double, 17> kDurationBuckets = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

  void on_job_event(const JobEvent& event) noexcept override;
  // render appends this worker's families to `out` in the text format.
  void render(std::string& out) const;

 private:
  struct Counts {
    std::uint64_t started = 0;
    std::uint64_t succeeded = 0;
    std::uint64_t failed = 0;
    std::uint64_t retried = 0;
    std::uint64_t cancelled = 0;
    std::uint64_t snoozed = 0;
    std::uint64_t released = 0;
    std::uint64_t timed_out = 0;
    std::uint64_t crashed = 0;
  };
  struct Histogram {
    std::array<std::uint64_t, kDurationBuckets.size()> buckets{};  // not cumulative
    std::uint64_t count = 0;
    double sum = 0;
  };
  using TaskQueue = std::pair<std::string, std::string>;
  // Finds a (task, queue) key from string views, so a lookup allocates nothing.
  struct TaskQueueLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return std::pair<std::string_view, std::string_view>(a.first, a.second) <
             std::pair<std::string_view, std::string_view>(b.first, b.second);
    }
  };

  mutable std::mutex mutex_;
  std::map<TaskQueue, Counts, TaskQueueLess> counts_;
  std::map<std::string, Histogram, std::less<>> durations_;
};

// WorkerGauges: what a worker holds right now, read at scrape time.
struct WorkerGauges {
  std::uint64_t running = 0;     // jobs held (reserved or running)
  std::uint64_t free_slots = 0;  // WorkerStats::slots - running
};

// worker_gauges reads a worker's gauges from Worker::stats().
WorkerGauges worker_gauges(const Worker& worker);

// render_metrics writes one scrape: the worker's counters (when `worker_metrics` is set), the
// process-wide counters, the gauges cinejobs_jobs_running and cinejobs_worker_free_slots (when
// `gauges` is set), and cinejobs_queue_jobs{queue,state} read from `broker` (when set) with
// one Broker::counts call. A broker that fails does not fail the scrape: its families are left
// out and cinejobs_queue_depth_up reads 0 (1 when the counts were read). Every family has its
// # HELP and # TYPE lines; label values are escaped as the format requires.
std::string render_metrics(const WorkerMetrics* worker_metrics,
                           const std::optional<WorkerGauges>& gauges, Broker* broker);

// Process-wide counters. Each is safe from any thread and never throws (an allocation failure
// loses the count, not the caller's work).

// count_child_restart counts a process-mode child replaced by a fresh one, by cause: "crashed",
// "hard_timeout", "max_jobs" or "max_memory". Rendered as cinejobs_child_restarts_total{cause}.
void count_child_restart(std::string_view cause) noexcept;
// count_rate_limit_wait counts a caller or job held back by the rate limiter `limiter_name`: an
// acquire() that had to wait, or a job snoozed until its limit admits it (snooze_delay).
// Rendered as cinejobs_rate_limit_waits_total{limiter}.
void count_rate_limit_wait(std::string_view limiter_name) noexcept;
// count_tmdb_429_pause counts a 429 answer from TMDB that paused the client (and the limiter it
// shares). Rendered as cinejobs_tmdb_429_pauses_total.
void count_tmdb_429_pause() noexcept;
// count_batcher_items counts items added to the batcher `batcher`
// (cinejobs_batcher_items_total{batcher}); count_batcher_batch one write of a batch to its sink,
// retries included (cinejobs_batcher_batches_total{batcher}); count_batcher_dead_lettered items
// stored in its dead letter (cinejobs_batcher_dead_lettered_total{batcher}).
void count_batcher_items(std::string_view batcher, std::uint64_t n = 1) noexcept;
void count_batcher_batch(std::string_view batcher) noexcept;
void count_batcher_dead_lettered(std::string_view batcher, std::uint64_t n) noexcept;

// The text format's content type, for HTTP servers of the scrape.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace cinejobs
