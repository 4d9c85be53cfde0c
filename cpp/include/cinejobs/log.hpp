// Log: the core's own messages, those no job owns (a reserve that failed and is retried, a child
// process that died, a batch that could not be written). By default each is one line on stderr,
// "cinejobs <component>: <message>". A process that logs elsewhere (the Python layer's `cinejobs`
// logger, in text or JSON for log shippers) installs a LogQueue and drains it from a thread of
// its own: log() never blocks on the consumer and never throws.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs {

enum class LogLevel { kDebug = 10, kInfo = 20, kWarning = 30, kError = 40 };

struct LogRecord {
  LogLevel level = LogLevel::kWarning;
  std::string component;  // "worker", "scheduler", "batcher <name>", ...
  std::string message;
  std::int64_t at = 0;  // epoch ms
};

// log writes one record: to the installed LogQueue, else to stderr.
void log(LogLevel level, std::string_view component, std::string_view message) noexcept;

// LogQueue holds records for a consumer thread; at most `capacity`, dropping the oldest (and
// counting them) when the consumer falls behind.
class LogQueue {
 public:
  explicit LogQueue(std::size_t capacity = 10000);
  void push(LogRecord record) noexcept;
  // take waits up to `timeout` for records and returns at most `max`, oldest first.
  std::vector<LogRecord> take(std::size_t max, std::chrono::milliseconds timeout);
  // close wakes every take() for good: records still queued are still returned.
  void close() noexcept;
  std::uint64_t dropped() const noexcept;

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<LogRecord> records_;
  std::uint64_t dropped_ = 0;
  bool closed_ = false;
};

// install_log_queue sends every later record to `queue` (nullptr: back to stderr).
void install_log_queue(std::shared_ptr<LogQueue> queue) noexcept;

}  // namespace cinejobs
