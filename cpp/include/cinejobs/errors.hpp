// cinejobs errors: one base class and one subclass per thing a caller may handle differently.
// Messages say what was wrong and what to do about it. The Python bindings map each class to
// the exception of the same name in cinejobs.errors.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace cinejobs {

// Error is the base of every exception cinejobs throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ConfigError: a malformed broker URL, an unknown option, an invalid setting.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// BrokerUnavailable: the broker's store cannot be opened or reached (file not writable, server
// down). Retrying later may succeed.
class BrokerUnavailable : public Error {
 public:
  using Error::Error;
};

// InvalidPayload: a job refused at the door (arguments that are not a JSON array or object,
// a payload over the size limit, an empty task name).
class InvalidPayload : public Error {
 public:
  using Error::Error;
};

// UnknownTask: no handler is registered under the job's task name.
class UnknownTask : public InvalidPayload {
 public:
  using InvalidPayload::InvalidPayload;
};

// JobNotFound: no job with the given id exists (never did, or was pruned after its retention).
class JobNotFound : public Error {
 public:
  using Error::Error;
};

// UniqueConflict: a live job already holds the unique key; existing_id() names it.
class UniqueConflict : public Error {
 public:
  UniqueConflict(std::string unique_key, std::string existing_id);
  const std::string& unique_key() const noexcept { return unique_key_; }
  const std::string& existing_id() const noexcept { return existing_id_; }

 private:
  std::string unique_key_;
  std::string existing_id_;
};

// JobCancelled: thrown into a running handler (at its next progress call) after the job was
// cancelled; the worker then records the job as cancelled.
class JobCancelled : public Error {
 public:
  using Error::Error;
};

// JobTimeout: thrown into a running handler (at its next progress call) after its soft
// timeout passed; the job fails with this error and is retried if attempts remain.
class JobTimeout : public Error {
 public:
  using Error::Error;
};

// FailureAction: what a handler's failure asks the worker to do with its job. Adapters of
// frameworks that decide retries themselves (the Celery worker) use it so that the worker's
// counters and job events say what that framework recorded.
enum class FailureAction {
  kRetry,    // retried (at retry_at, else after the backoff) while attempts remain, else failed
  kFail,     // failed now, whatever attempts remain
  kRetried,  // the handler has enqueued the next attempt itself (a Celery retry publishes a new
             // message): this delivery ends, counted as a retry
  kSnooze,   // held back until retry_at (now when empty) without counting the attempt
  kCancel,   // ended cancelled
};

// HandlerError: a handler's failure as the job will record it: an error type name, a message
// and a traceback (empty for native handlers). A handler that knows when its job should run
// again (a Celery ETA, an upstream's Retry-After) sets retry_at: the worker then retries at that
// time, when attempts remain, instead of after its backoff. `action` overrides the worker's
// own decision (see FailureAction).
class HandlerError : public Error {
 public:
  HandlerError(std::string type, std::string message, std::string traceback = {},
               std::optional<std::int64_t> retry_at = std::nullopt,
               FailureAction action = FailureAction::kRetry);
  const std::string& type() const noexcept { return type_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& traceback() const noexcept { return traceback_; }
  // Epoch milliseconds, or empty: retry after the backoff.
  const std::optional<std::int64_t>& retry_at() const noexcept { return retry_at_; }
  FailureAction action() const noexcept { return action_; }

 private:
  std::string type_;
  std::string message_;
  std::string traceback_;
  std::optional<std::int64_t> retry_at_;
  FailureAction action_;
};

}  // namespace cinejobs
