// Job: the one document every broker stores and both languages exchange. Its JSON form (the
// wire format) is the same on every broker; arguments, kwargs and results are JSON text kept
// verbatim (also through to_json / job_from_json), so the core never re-encodes what a handler
// produced.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cinejobs {

// Epoch milliseconds, the unit of every timestamp in a job.
using EpochMs = std::int64_t;
EpochMs now_ms() noexcept;

// JobState: scheduled -> queued -> running -> succeeded | failed | cancelled. A job waiting
// for its run_at (a delay or a retry) is scheduled; once run_at has passed it reads as queued.
enum class JobState { kScheduled, kQueued, kRunning, kSucceeded, kFailed, kCancelled };

std::string_view to_string(JobState state) noexcept;
// parse_job_state throws InvalidPayload naming the text when it is no state.
JobState parse_job_state(std::string_view text);
constexpr bool is_final(JobState s) noexcept {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

// Progress as the running handler last reported it.
struct Progress {
  double fraction = 0.0;  // 0..1
  std::string step;
  std::string message;
  bool operator==(const Progress&) const = default;
};

// JobFailure: why the last attempt failed.
struct JobFailure {
  std::string type;  // e.g. "ValueError", "JobTimeout", "UnknownTask"
  std::string message;
  std::string traceback;  // empty for native handlers
  bool operator==(const JobFailure&) const = default;
};

struct Job {
  std::string id;  // UUID text; new_job_id() when empty at enqueue
  std::string task;
  std::string queue = "default";
  std::string args = "[]";    // JSON array text
  std::string kwargs = "{}";  // JSON object text
  int priority = 0;           // higher runs first within a queue
  EpochMs run_at = 0;         // earliest start; 0 means now
  int attempt = 0;            // deliveries so far
  int max_attempts = 3;
  std::optional<std::string> unique_key;
  std::int64_t timeout_ms = 0;  // soft run-time limit; 0 means none
  JobState state = JobState::kQueued;
  std::optional<Progress> progress;
  std::optional<std::string> result;  // JSON text
  std::optional<JobFailure> error;
  EpochMs created_at = 0;
  EpochMs started_at = 0;   // first delivery's start (kept on redelivery); 0 until reserved
  EpochMs finished_at = 0;  // 0 until final
  bool cancel_requested = false;
  // Set by reserve: proves to ack, fail, extend and release that this delivery still owns the
  // job. Not part of the wire document.
  std::uint64_t lease_token = 0;

  bool operator==(const Job&) const = default;
};

// new_job_id returns 128 random bits in UUID version 4 form.
std::string new_job_id();

// to_json encodes the wire document; job_from_json decodes it and throws InvalidPayload naming
// the field that is missing or of the wrong type.
std::string to_json(const Job& job);
Job job_from_json(std::string_view json);

}  // namespace cinejobs
