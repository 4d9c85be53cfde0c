#include "cinejobs/job_context.hpp"

#include <algorithm>

#include "cinejobs/errors.hpp"

namespace cinejobs {

JobContext::JobContext(Job job, std::shared_ptr<Broker> broker)
    : job_(std::move(job)), broker_(std::move(broker)) {}

JobContext::JobContext(Job job, ProgressSink sink) : job_(std::move(job)), sink_(std::move(sink)) {}

Broker& JobContext::broker() const {
  if (!broker_) {
    throw ConfigError("job " + job_.id + " of task '" + job_.task +
                      "' runs in a child process, which has no broker: register handlers that "
                      "use the broker in the supervisor");
  }
  return *broker_;
}

bool JobContext::request_stop(StopReason reason) noexcept {
  int expected = 0;
  return reason_.compare_exchange_strong(expected, static_cast<int>(reason),
                                         std::memory_order_acq_rel);
}

void JobContext::throw_if_stopped() const {
  switch (stop_reason()) {
    case StopReason::kNone:
      break;
    case StopReason::kTimeout:
      throw JobTimeout("job " + job_.id + " ran past its timeout of " +
                       std::to_string(job_.timeout_ms) + " ms");
    case StopReason::kCancelled:
      throw JobCancelled("job " + job_.id + " was cancelled");
    case StopReason::kShutdown:
      throw JobCancelled("job " + job_.id + " was stopped: the worker is shutting down");
    case StopReason::kLeaseLost:
      throw JobCancelled("job " + job_.id + " lost its lease; another worker may run it");
  }
}

void JobContext::progress(double fraction, std::string step, std::string message) {
  throw_if_stopped();
  if (!(fraction >= 0.0)) fraction = 0.0;  // also catches NaN
  fraction = std::min(fraction, 1.0);
  Progress p{fraction, std::move(step), std::move(message)};
  const bool owned =
      sink_ ? sink_(job_.id, p) : broker().set_progress(LeaseRef{job_.id, job_.lease_token}, p);
  if (!owned) {
    request_stop(StopReason::kLeaseLost);
  }
}

}  // namespace cinejobs
