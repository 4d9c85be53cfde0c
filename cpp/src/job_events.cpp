#include "cinejobs/job_events.hpp"

#include <algorithm>

namespace cinejobs {

JobEventQueue::JobEventQueue(std::size_t capacity, const std::vector<JobEventKind>& kinds)
    : capacity_(std::max<std::size_t>(capacity, 1)) {
  if (kinds.empty()) return;
  kinds_ = 0;
  for (JobEventKind kind : kinds) kinds_ |= std::uint32_t{1} << static_cast<unsigned>(kind);
}

void JobEventQueue::on_job_event(const JobEvent& event) noexcept {
  if ((kinds_ & (std::uint32_t{1} << static_cast<unsigned>(event.kind))) == 0) return;
  try {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      if (events_.size() >= capacity_) {
        events_.pop_front();
        ++dropped_;
      }
      events_.push_back(event);
    }
    cv_.notify_one();
  } catch (...) {
    // Out of memory copying an event: the log loses it, the job does not.
    std::lock_guard lock(mutex_);
    ++dropped_;
  }
}

std::vector<JobEvent> JobEventQueue::take(std::size_t max, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !events_.empty() || closed_; });
  std::vector<JobEvent> out;
  const std::size_t n = std::min(max, events_.size());
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return out;
}

void JobEventQueue::close() noexcept {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  cv_.notify_all();
}

std::uint64_t JobEventQueue::dropped() const noexcept {
  std::lock_guard lock(mutex_);
  return dropped_;
}

}  // namespace cinejobs
