#include "cinejobs/batcher.hpp"

#include <algorithm>
#include <utility>

#include "cinejobs/log.hpp"
#include "cinejobs/metrics.hpp"

namespace cinejobs {
namespace {

using Clock = std::chrono::steady_clock;

void log_line(const std::string& name, const std::string& message) {
  log(LogLevel::kWarning, name, message);
}

// backoff_for returns the wait before retry round `round` (0-based): backoff * 2^round, capped.
std::chrono::milliseconds backoff_for(const BatcherOptions& options, int round) {
  auto wait = options.retry_backoff;
  for (int i = 0; i < round && wait < options.retry_backoff_max; ++i) wait *= 2;
  return std::min(wait, options.retry_backoff_max);
}

void validate(const BatcherOptions& o) {
  auto refuse = [](const std::string& what) {
    throw ConfigError("invalid batcher option: " + what);
  };
  if (o.max_items == 0) refuse("max_items must be at least 1");
  if (o.max_bytes == 0) refuse("max_bytes must be at least 1");
  if (o.capacity < o.max_items) {
    refuse("capacity (" + std::to_string(o.capacity) + ") must be at least max_items (" +
           std::to_string(o.max_items) + ")");
  }
  if (o.max_attempts < 1) refuse("max_attempts must be at least 1");
  if (o.max_age.count() < 0) refuse("max_age must not be negative");
  if (o.retry_backoff.count() < 0 || o.retry_backoff_max.count() < 0) {
    refuse("retry_backoff and retry_backoff_max must not be negative");
  }
}

}  // namespace

Batcher::Batcher(std::shared_ptr<BatchSink> sink, BatcherOptions options,
                 std::shared_ptr<DeadLetterSink> dead_letter)
    : sink_(std::move(sink)), dead_letter_(std::move(dead_letter)), options_(std::move(options)) {
  if (!sink_) throw ConfigError("a Batcher needs a sink");
  validate(options_);
  thread_ = std::jthread([this] { run(); });
}

Batcher::~Batcher() {
  try {
    close();
  } catch (const std::exception& e) {
    log_line(options_.name, std::string("closing failed: ") + e.what());
  }
}

void Batcher::add(std::string item, std::optional<std::chrono::milliseconds> timeout) {
  if (timeout) {
    if (!offer(item, *timeout)) {
      throw BatcherFull(options_.name + " is full (" + std::to_string(options_.capacity) +
                        " items held): the sink is slower than the producers; wait, or raise "
                        "capacity");
    }
    return;
  }
  while (!offer(item, std::chrono::hours(1))) {
  }
}

bool Batcher::offer(std::string& item, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const auto has_room = [this] {
    return closing_ || buffer_.size() + in_flight_ < options_.capacity;
  };
  if (!room_or_progress_.wait_for(lock, timeout, has_room)) return false;
  if (closing_) throw BatcherClosed(options_.name + " is closed: it takes no more items");
  buffer_bytes_ += item.size();
  buffer_.push_back({std::move(item), Clock::now()});
  ++stats_.added;
  count_batcher_items(options_.name);
  // The flusher sleeps without a deadline on an empty buffer, and until the age deadline
  // otherwise: wake it for the first item and when a size limit is reached.
  if (buffer_.size() == 1 || buffer_.size() >= options_.max_items ||
      buffer_bytes_ >= options_.max_bytes) {
    wake_flusher_.notify_one();
  }
  return true;
}

bool Batcher::flush(std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = stats_.added;
  const auto done = [&] { return finished_ >= target; };
  if (done()) return true;
  flush_target_ = std::max(flush_target_, target);
  wake_flusher_.notify_one();
  if (!timeout) {
    room_or_progress_.wait(lock, done);
    return true;
  }
  return room_or_progress_.wait_for(lock, *timeout, done);
}

void Batcher::close() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  wake_flusher_.notify_one();
  room_or_progress_.notify_all();
  // A sink that closes its own batcher cannot wait for itself: the flusher drains and exits.
  if (std::this_thread::get_id() == thread_.get_id()) return;
  std::lock_guard close_lock(close_mutex_);
  if (thread_.joinable()) thread_.join();
}

bool Batcher::closed() const {
  std::lock_guard lock(mutex_);
  return closing_;
}

BatcherStats Batcher::stats() const {
  std::lock_guard lock(mutex_);
  BatcherStats out = stats_;
  out.pending = out.added - out.delivered - out.dead_lettered - out.undelivered;
  return out;
}

std::vector<DeadLetterEntry> Batcher::undelivered() const {
  std::lock_guard lock(mutex_);
  return undelivered_;
}

bool Batcher::flush_due(Clock::time_point now) const {
  return closing_ || buffer_.size() >= options_.max_items || buffer_bytes_ >= options_.max_bytes ||
         now >= buffer_.front().added + options_.max_age || flush_target_ > finished_ + in_flight_;
}

void Batcher::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (buffer_.empty()) {
      if (closing_) return;
      wake_flusher_.wait(lock);
      continue;
    }
    if (!flush_due(Clock::now())) {
      wake_flusher_.wait_until(lock, buffer_.front().added + options_.max_age);
      continue;
    }
    std::vector<std::string> batch;
    std::size_t bytes = 0;
    while (!buffer_.empty() && batch.size() < options_.max_items &&
           (batch.empty() || bytes + buffer_.front().item.size() <= options_.max_bytes)) {
      bytes += buffer_.front().item.size();
      batch.push_back(std::move(buffer_.front().item));
      buffer_.pop_front();
    }
    buffer_bytes_ -= bytes;
    in_flight_ += batch.size();
    lock.unlock();
    const std::size_t count = batch.size();
    write_batch(std::move(batch));
    finish(count);
    lock.lock();
  }
}

// write_batch writes the batch until every item is delivered or buried. Retries happen here, on
// the flush thread, before the next batch is taken: items finish in the order they were added
// (which is what lets flush() wait on a sequence number), and a failing sink holds the flusher
// back, so add() meets back-pressure instead of an ever-growing retry queue.
void Batcher::write_batch(std::vector<std::string> items) {
  std::vector<int> attempts(items.size(), 0);
  for (int round = 0; !items.empty(); ++round) {
    std::vector<ItemResult> results;
    std::string batch_error;
    try {
      results = sink_->write(items);
      if (!results.empty() && results.size() != items.size()) {
        batch_error = sink_->describe() + " returned " + std::to_string(results.size()) +
                      " results for " + std::to_string(items.size()) + " items";
        results.clear();
      }
    } catch (const std::exception& e) {
      batch_error = e.what();
    } catch (...) {
      batch_error = "unknown exception from " + sink_->describe();
    }

    std::vector<std::string> again;
    std::vector<int> again_attempts;
    std::vector<DeadLetterEntry> dead;
    std::uint64_t delivered = 0;
    std::string retry_error;
    std::chrono::milliseconds asked_wait{0};
    for (std::size_t i = 0; i < items.size(); ++i) {
      ItemResult result;
      if (!batch_error.empty()) {
        result = {ItemOutcome::kRetry, batch_error};
      } else if (!results.empty()) {
        result = std::move(results[i]);
      }
      const int tried = attempts[i] + 1;
      if (result.outcome == ItemOutcome::kDelivered) {
        ++delivered;
      } else if (result.outcome == ItemOutcome::kRetry && tried < options_.max_attempts) {
        if (retry_error.empty()) retry_error = result.error;
        asked_wait = std::max(asked_wait, result.retry_after);
        again.push_back(std::move(items[i]));
        again_attempts.push_back(tried);
      } else {
        if (result.error.empty()) result.error = "refused by " + sink_->describe();
        dead.push_back({std::move(items[i]), std::move(result.error), now_ms(), tried});
      }
    }
    {
      std::lock_guard lock(mutex_);
      ++stats_.batches;
      stats_.delivered += delivered;
      stats_.retried += again.size();
    }
    count_batcher_batch(options_.name);
    if (!dead.empty()) bury(std::move(dead));
    items = std::move(again);
    attempts = std::move(again_attempts);
    if (!items.empty()) {
      const auto wait = std::max(backoff_for(options_, round), asked_wait);
      log_line(options_.name, std::to_string(items.size()) + " items not written to " +
                                  sink_->describe() + " (" + retry_error + "): retrying in " +
                                  std::to_string(wait.count()) + " ms");
      std::this_thread::sleep_for(wait);
    }
  }
}

void Batcher::bury(std::vector<DeadLetterEntry> entries) {
  const std::string count = std::to_string(entries.size());
  std::string failure;
  if (dead_letter_) {
    try {
      dead_letter_->write(entries);
      log_line(options_.name, count + " items dead-lettered to " + dead_letter_->describe() +
                                  " (first error: " + entries.front().error + ")");
      count_batcher_dead_lettered(options_.name, entries.size());
      std::lock_guard lock(mutex_);
      stats_.dead_lettered += entries.size();
      return;
    } catch (const std::exception& e) {
      failure = "the dead letter " + dead_letter_->describe() + " failed (" + e.what() + ")";
    }
  } else {
    failure = "no dead letter is configured";
  }
  log_line(options_.name,
           count + " items could not be delivered (first error: " + entries.front().error +
               ") and " + failure + ": keeping them in memory, see undelivered()");
  std::lock_guard lock(mutex_);
  stats_.undelivered += entries.size();
  std::move(entries.begin(), entries.end(), std::back_inserter(undelivered_));
}

void Batcher::finish(std::size_t count) {
  {
    std::lock_guard lock(mutex_);
    finished_ += count;
    in_flight_ -= count;
  }
  room_or_progress_.notify_all();
}

}  // namespace cinejobs
