// JobEvent: a job starting or ending on a worker, as the core saw it. The worker is the one
// place that counts and reports jobs: it hands each event to its observers (Prometheus
// counters, the job log) so that no other layer counts on its own and disagrees.
//
// Observers are called on the worker's own threads without the GIL: a start on the handler
// thread just before the handler runs, an end on the acker thread once the broker has stored
// the outcome. They must be quick and must not throw (on_job_event is noexcept).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cinejobs/job.hpp"

namespace cinejobs {

enum class JobEventKind {
  kStarted,    // the handler is about to run (after the task's rate limit admitted it)
  kSucceeded,  // stored as succeeded
  kFailed,     // stored as failed, no attempt left (or the task is unknown)
  kRetried,    // the attempt failed and the job is scheduled again
  kCancelled,  // stored as cancelled
  kSnoozed,    // held back by its task's rate limit; the attempt is not counted
  kReleased,   // returned to the queue by a stop past its grace
};

std::string_view to_string(JobEventKind kind) noexcept;

struct JobEvent {
  JobEventKind kind = JobEventKind::kStarted;
  std::string id;
  std::string task;
  std::string queue;
  int attempt = 0;  // this delivery's attempt number (1 for the first)
  int max_attempts = 0;
  EpochMs at = 0;  // when it happened
  // From the handler's start to its outcome; zero for a start, and for an end that never ran a
  // handler (snoozed, unknown task, released before it started).
  std::chrono::microseconds duration{0};
  // Why the attempt failed: for kFailed, kRetried and kCancelled. Its type says more: JobTimeout
  // for a soft or hard time limit, WorkerCrashed for a child process that died.
  std::optional<JobFailure> error;
  EpochMs retry_at = 0;  // kRetried and kSnoozed: when it runs again
};

// JobObserver receives a worker's job events (Worker::add_observer).
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  virtual void on_job_event(const JobEvent& event) noexcept = 0;
};

// JobEventQueue keeps events for a consumer on another thread (the Python job log drains it).
// It holds at most `capacity` events: when the consumer falls behind, the oldest are dropped
// and counted, so a slow log never slows or stops the worker. It keeps only the events of
// `kinds` (all when empty), and ignores the others at the cost of one test: a log that shows
// only failures pays nothing for the jobs that succeed.
class JobEventQueue : public JobObserver {
 public:
  explicit JobEventQueue(std::size_t capacity = 100000,
                         const std::vector<JobEventKind>& kinds = {});
  void on_job_event(const JobEvent& event) noexcept override;
  // take waits up to `timeout` for events and returns at most `max` of them, oldest first;
  // empty after the timeout, or at once once close() was called and nothing is left.
  std::vector<JobEvent> take(std::size_t max, std::chrono::milliseconds timeout);
  // close wakes every take(); events still queued are still returned.
  void close() noexcept;
  std::uint64_t dropped() const noexcept;

 private:
  const std::size_t capacity_;
  std::uint32_t kinds_ = ~std::uint32_t{0};  // bit (1 << kind) set: kept
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
  std::uint64_t dropped_ = 0;
  bool closed_ = false;
};

}  // namespace cinejobs
