// JobContext: what a running handler sees of its job: the job document, a progress reporter and
// a cancel token. The worker sets the token when the job is cancelled in the broker, when its
// soft timeout passes, or when the worker stops past its grace period; progress() then throws
// so that handlers which report progress stop at their next report.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "cinejobs/broker.hpp"
#include "cinejobs/job.hpp"

namespace cinejobs {

// StopReason says why a running job's token was set; the first reason set wins.
enum class StopReason : int { kNone = 0, kCancelled, kTimeout, kShutdown, kLeaseLost };

// ProgressSink stores a progress report somewhere other than a broker (a child process sends it
// to its supervisor); it returns false when the job no longer owns its lease.
using ProgressSink = std::function<bool(const std::string& id, const Progress& progress)>;

class JobContext : public std::enable_shared_from_this<JobContext> {
 public:
  JobContext(Job job, std::shared_ptr<Broker> broker);
  // A job run away from its broker (in a child process): progress goes to `sink`, and broker()
  // throws ConfigError (handlers that need the broker run in the supervisor).
  JobContext(Job job, ProgressSink sink);

  const Job& job() const noexcept { return job_; }
  const std::string& id() const noexcept { return job_.id; }
  // broker is the broker the job came from (maintenance handlers such as cinejobs.prune use it).
  Broker& broker() const;

  // progress stores fraction (clamped to 0..1), step and message in the broker. Throws
  // JobCancelled or JobTimeout when the token is set, so a handler that reports progress stops
  // there. Safe to call from any thread while the job runs.
  void progress(double fraction, std::string step = {}, std::string message = {});

  // throw_if_stopped throws JobTimeout or JobCancelled (saying why) once the token is set, and
  // returns at once otherwise; progress() calls it first.
  void throw_if_stopped() const;

  // cancel_requested is true once the token is set, whatever the reason.
  bool cancel_requested() const noexcept { return stop_reason() != StopReason::kNone; }
  StopReason stop_reason() const noexcept {
    return static_cast<StopReason>(reason_.load(std::memory_order_acquire));
  }
  // request_stop sets the token; false when it was already set (the first reason stands).
  bool request_stop(StopReason reason) noexcept;

 private:
  Job job_;
  std::shared_ptr<Broker> broker_;
  ProgressSink sink_;
  std::atomic<int> reason_{0};
};

}  // namespace cinejobs
