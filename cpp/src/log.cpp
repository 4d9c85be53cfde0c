#include "cinejobs/log.hpp"

#include <algorithm>
#include <cstdio>

#include "cinejobs/job.hpp"

namespace cinejobs {
namespace {

std::mutex installed_mutex;
std::shared_ptr<LogQueue> installed;  // guarded by installed_mutex

}  // namespace

void log(LogLevel level, std::string_view component, std::string_view message) noexcept {
  std::shared_ptr<LogQueue> queue;
  {
    std::lock_guard lock(installed_mutex);
    queue = installed;
  }
  if (queue) {
    try {
      queue->push(LogRecord{level, std::string(component), std::string(message), now_ms()});
      return;
    } catch (...) {
      // Out of memory building the record: say it on stderr instead.
    }
  }
  std::fprintf(stderr, "cinejobs %.*s: %.*s\n", static_cast<int>(component.size()),
               component.data(), static_cast<int>(message.size()), message.data());
}

LogQueue::LogQueue(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

void LogQueue::push(LogRecord record) noexcept {
  {
    std::lock_guard lock(mutex_);
    if (records_.size() >= capacity_) {
      records_.pop_front();
      ++dropped_;
    }
    records_.push_back(std::move(record));
  }
  cv_.notify_one();
}

std::vector<LogRecord> LogQueue::take(std::size_t max, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !records_.empty() || closed_; });
  std::vector<LogRecord> out;
  const std::size_t n = std::min(max, records_.size());
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(std::move(records_.front()));
    records_.pop_front();
  }
  return out;
}

void LogQueue::close() noexcept {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  cv_.notify_all();
}

std::uint64_t LogQueue::dropped() const noexcept {
  std::lock_guard lock(mutex_);
  return dropped_;
}

void install_log_queue(std::shared_ptr<LogQueue> queue) noexcept {
  std::lock_guard lock(installed_mutex);
  installed = std::move(queue);
}

}  // namespace cinejobs
