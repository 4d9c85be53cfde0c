// Helpers shared by the GoogleTest suites: a temporary directory that removes itself, a
// deadline-bounded poll (tests synchronise on conditions, never on bare sleeps), a gate that
// blocked handlers wait on, and gtest printers for the core types so failures read well.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/job.hpp"
#include "cinejobs/job_context.hpp"

namespace cinejobs {

// gtest finds these by argument-dependent lookup when it prints a failed comparison.
inline void PrintTo(JobState state, std::ostream* os) { *os << to_string(state); }
inline void PrintTo(const Job& job, std::ostream* os) {
  *os << to_json(job) << " lease_token=" << job.lease_token;
}
inline void PrintTo(const JobFailure& failure, std::ostream* os) {
  *os << "{type=" << failure.type << ", message=" << failure.message
      << ", traceback=" << failure.traceback << "}";
}
inline void PrintTo(const QueueCount& count, std::ostream* os) {
  *os << "{" << count.queue << ", " << to_string(count.state) << ", " << count.count << "}";
}

}  // namespace cinejobs

namespace cinejobs::test {

using namespace std::chrono_literals;

// TempDir: a fresh directory from mkdtemp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "cinejobs-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

// in_ci tells whether the tests run in CI, where a missing server is a failure (outside CI the
// tests of a broker whose server is not installed are left out).
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string_view(ci) == "true" || std::string_view(ci) == "1");
}

// sqlite_url names a database file inside `dir` (an absolute path, hence four slashes).
inline std::string sqlite_url(const std::string& dir) { return "sqlite:///" + dir + "/jobs.db"; }

// wait_until polls `pred` every `step` until it holds or `timeout` passes, and returns its last
// value. Use it as ASSERT_TRUE(wait_until(...)) so a deadline miss fails the test.
template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
  }
}

// wait_for_clock waits until the wall clock (the one job timestamps use) reaches `when`.
inline void wait_for_clock(EpochMs when) {
  while (now_ms() < when) std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

// Gate: handlers block on it until the test opens it. wait() also returns when the job's token is
// set (so a worker's stop or cancel is never stuck behind a test gate) or after `timeout` (so a
// broken test fails instead of hanging). Returns true when the gate was opened.
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool is_open() const {
    std::lock_guard lock(mutex_);
    return open_;
  }
  bool wait(const JobContext* ctx = nullptr,
            std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    while (!open_) {
      if (ctx != nullptr && ctx->cancel_requested()) return false;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
    return true;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// MaxTracker: counts handlers running at once and remembers the highest count.
class MaxTracker {
 public:
  void enter() {
    const int now = ++current_;
    int seen = max_.load();
    while (now > seen && !max_.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() { --current_; }
  int current() const { return current_.load(); }
  int max() const { return max_.load(); }

 private:
  std::atomic<int> current_{0};
  std::atomic<int> max_{0};
};

// cat joins text pieces. (Used instead of "[" + s + "]": GCC 12 at -O3 reports a false
// -Wrestrict on operator+(const char*, std::string&&), which -Werror turns into a build failure.)
inline std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (const auto part : parts) out.append(part);
  return out;
}

// make_job builds a valid new job for `task` in `queue`.
inline Job make_job(std::string task = "test.task", std::string queue = "default") {
  Job job;
  job.task = std::move(task);
  job.queue = std::move(queue);
  return job;
}

// get_job returns the stored job, failing the test (by exception) when it does not exist.
inline Job get_job(Broker& broker, const std::string& id) {
  auto job = broker.get(id);
  if (!job) throw std::runtime_error("job " + id + " not found in the broker");
  return *job;
}

// state_of returns the job's stored state (throws when the job does not exist).
inline JobState state_of(Broker& broker, const std::string& id) {
  return get_job(broker, id).state;
}

// count_in returns how many jobs the broker counts in `state` (all queues, or one).
inline std::int64_t count_in(Broker& broker, JobState state,
                             const std::optional<std::string>& queue = std::nullopt) {
  std::int64_t total = 0;
  for (const auto& c : broker.counts()) {
    if (c.state == state && (!queue || c.queue == *queue)) total += c.count;
  }
  return total;
}

}  // namespace cinejobs::test
