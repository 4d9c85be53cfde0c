// Batcher: collects items (JSON text, one std::string each) from any thread and writes them to a
// sink in batches: when `max_items` or `max_bytes` are buffered, when the oldest buffered item is
// `max_age` old, on flush() and on close(). One flush thread writes batches one after another, so
// items reach the sink in the order they were added (retries aside).
//
// Nothing is dropped silently. The sink says per item whether it was delivered, should be retried
// or failed for good; retried items are written again with exponential backoff, and an item that
// failed for good or used up `max_attempts` goes to the dead letter (a JSONL file or a table),
// counted in stats() and announced on stderr. When even the dead letter cannot take an item, the
// item is kept in memory (undelivered()) and reported, never lost.
//
// Back-pressure: at most `capacity` items are held (buffered or being written); add() waits for
// room, or throws BatcherFull when its timeout passes. Cost: one thread, one mutex taken per
// add(); the sink is called without the mutex held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cinejobs/errors.hpp"
#include "cinejobs/job.hpp"

namespace cinejobs {

// ItemOutcome: what a sink made of one item of a batch.
enum class ItemOutcome : std::uint8_t {
  kDelivered,  // written; done
  kRetry,      // not written, may succeed later (overload, timeout, 429, 5xx)
  kFailed,     // refused for good (a mapping error, a 4xx): goes to the dead letter at once
};

struct ItemResult {
  ItemResult() = default;
  ItemResult(ItemOutcome outcome_, std::string error_ = {},
             std::chrono::milliseconds retry_after_ = std::chrono::milliseconds(0))
      : outcome(outcome_), error(std::move(error_)), retry_after(retry_after_) {}

  ItemOutcome outcome = ItemOutcome::kDelivered;
  std::string error;  // why, when not delivered
  // For kRetry: the least wait the service asked for (an HTTP Retry-After); zero: none. The
  // batcher waits the longer of this and its own backoff.
  std::chrono::milliseconds retry_after{0};
};

// BatchSink writes batches. write() returns one result per item, in order; an empty vector means
// every item was delivered. Throwing means the whole batch may be retried (the exception's
// message is the items' error). write() is only ever called from one thread at a time.
class BatchSink {
 public:
  virtual ~BatchSink() = default;
  virtual std::vector<ItemResult> write(std::span<const std::string> items) = 0;
  // describe names the sink in log lines: "postgres table public.movies".
  virtual std::string describe() const = 0;
};

// DeadLetterEntry: an item the sink would not take, why, when, after how many attempts.
struct DeadLetterEntry {
  std::string item;
  std::string error;
  EpochMs at = 0;
  int attempts = 0;
};

// DeadLetterSink stores entries durably; write() throws when it cannot (the batcher then keeps
// the entries in memory and says so).
class DeadLetterSink {
 public:
  virtual ~DeadLetterSink() = default;
  virtual void write(std::span<const DeadLetterEntry> entries) = 0;
  virtual std::string describe() const = 0;
};

// BatcherFull: add() found no room before its timeout (or at once with a zero timeout).
class BatcherFull : public Error {
 public:
  using Error::Error;
};

// BatcherClosed: add() after close().
class BatcherClosed : public Error {
 public:
  using Error::Error;
};

struct BatcherOptions {
  std::size_t max_items = 500;                        // flush at this many buffered items
  std::size_t max_bytes = 5 * 1024 * 1024;            // ... or this many bytes of item text
  std::chrono::milliseconds max_age{5000};            // ... or when the oldest is this old
  std::size_t capacity = 10000;                       // most items held; add() waits beyond it
  int max_attempts = 5;                               // writes of one item before dead letter
  std::chrono::milliseconds retry_backoff{100};       // wait before retry n: backoff * 2^(n-1)
  std::chrono::milliseconds retry_backoff_max{5000};  // ... capped here
  std::string name = "batcher";                       // in log lines
};

struct BatcherStats {
  std::uint64_t added = 0;
  std::uint64_t delivered = 0;
  std::uint64_t retried = 0;        // item writes that will be tried again
  std::uint64_t dead_lettered = 0;  // items stored in the dead letter
  std::uint64_t undelivered = 0;    // items kept in memory: no dead letter, or it failed
  std::uint64_t pending = 0;        // added, not yet delivered, dead-lettered or undelivered
  std::uint64_t batches = 0;        // sink write calls
};

class Batcher {
 public:
  // The sink is required; without a dead letter, items that fail for good are kept in memory
  // (undelivered()) and logged. Throws ConfigError for zero max_items, max_bytes, capacity or
  // max_attempts, a negative age or backoff, or capacity < max_items. Starts the flush thread.
  Batcher(std::shared_ptr<BatchSink> sink, BatcherOptions options = {},
          std::shared_ptr<DeadLetterSink> dead_letter = nullptr);
  // Closes (flushes everything) if close() was not called.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // add buffers one item. It waits for room while `capacity` items are held: forever when
  // timeout is nullopt, not at all when zero, then throws BatcherFull. Throws BatcherClosed after
  // close(). Safe from any thread.
  void add(std::string item, std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // offer is add() for callers that wait in slices (Python checks for signals between them): it
  // returns false, leaving `item` untouched, when no room came within `timeout`; on success it
  // moves from `item`. Throws BatcherClosed after close().
  bool offer(std::string& item, std::chrono::milliseconds timeout);

  // flush writes everything added before the call and returns once each item is delivered,
  // dead-lettered or kept undelivered. Returns false if `timeout` passed first (nullopt: wait).
  bool flush(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // close stops accepting items, flushes everything and stops the flush thread. Safe twice and
  // from several threads; each call returns once the batcher is drained.
  void close();
  bool closed() const;

  BatcherStats stats() const;
  // undelivered returns the items that neither the sink nor the dead letter took.
  std::vector<DeadLetterEntry> undelivered() const;

  const BatcherOptions& options() const noexcept { return options_; }

 private:
  struct Buffered {
    std::string item;
    std::chrono::steady_clock::time_point added;
  };

  void run();
  bool flush_due(std::chrono::steady_clock::time_point now) const;
  void write_batch(std::vector<std::string> items);
  void bury(std::vector<DeadLetterEntry> entries);
  void finish(std::size_t count);

  std::shared_ptr<BatchSink> sink_;
  std::shared_ptr<DeadLetterSink> dead_letter_;
  BatcherOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_flusher_;      // items, flush requests, close
  std::condition_variable room_or_progress_;  // room for add(), progress for flush()
  std::deque<Buffered> buffer_;
  std::size_t buffer_bytes_ = 0;
  std::size_t in_flight_ = 0;       // taken from the buffer, not finished
  std::uint64_t flush_target_ = 0;  // flush everything added up to this sequence number
  std::uint64_t finished_ = 0;      // items finished, in add order
  bool closing_ = false;
  BatcherStats stats_;
  std::vector<DeadLetterEntry> undelivered_;

  std::mutex close_mutex_;
  std::jthread thread_;
};

}  // namespace cinejobs
