// The Batcher's core contract with in-memory sinks: each flush trigger, back-pressure, close,
// retries with per-item outcomes, the dead letter, and exactly-once delivery from many threads.
#include "cinejobs/batcher.hpp"

#include <fstream>
#include <set>

#include "cinejobs/batch_sinks.hpp"
#include "test_support.hpp"

namespace cinejobs {
namespace {

using namespace std::chrono_literals;
using test::Gate;
using test::wait_until;

// RecordingSink keeps every batch it accepted; `decide` may turn items into retries or failures.
class RecordingSink : public BatchSink {
 public:
  std::function<std::vector<ItemResult>(std::span<const std::string>)> decide;
  Gate* gate = nullptr;  // when set, write() waits for it (to hold the flusher)

  std::vector<ItemResult> write(std::span<const std::string> items) override {
    if (gate != nullptr) gate->wait();
    std::vector<ItemResult> results = decide ? decide(items) : std::vector<ItemResult>{};
    std::lock_guard lock(mutex_);
    ++calls_;
    batch_sizes_.push_back(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (results.empty() || results[i].outcome == ItemOutcome::kDelivered) {
        delivered_.push_back(items[i]);
      }
    }
    return results;
  }
  std::string describe() const override { return "recording sink"; }

  std::vector<std::string> delivered() const {
    std::lock_guard lock(mutex_);
    return delivered_;
  }
  std::vector<std::size_t> batch_sizes() const {
    std::lock_guard lock(mutex_);
    return batch_sizes_;
  }
  int calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> delivered_;
  std::vector<std::size_t> batch_sizes_;
  int calls_ = 0;
};

class FailingDeadLetter : public DeadLetterSink {
 public:
  void write(std::span<const DeadLetterEntry>) override { throw Error("disk full"); }
  std::string describe() const override { return "failing dead letter"; }
};

BatcherOptions quick(std::size_t max_items = 10) {
  BatcherOptions o;
  o.max_items = max_items;
  o.max_age = 60s;  // never, unless a test sets it
  o.capacity = std::max<std::size_t>(max_items, 1000);
  o.retry_backoff = 1ms;
  o.retry_backoff_max = 5ms;
  return o;
}

std::string item(int n) { return "{\"n\":" + std::to_string(n) + "}"; }

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(Batcher, FlushesWhenMaxItemsAreBuffered) {
  auto sink = std::make_shared<RecordingSink>();
  Batcher batcher(sink, quick(5));
  for (int i = 0; i < 12; ++i) batcher.add(item(i));
  ASSERT_TRUE(wait_until([&] { return sink->delivered().size() == 10; }, 10s));
  EXPECT_EQ(sink->batch_sizes(), (std::vector<std::size_t>{5, 5}));
  EXPECT_EQ(batcher.stats().pending, 2u);  // the last two wait for a trigger
  batcher.close();
  EXPECT_EQ(sink->delivered().size(), 12u);
}

TEST(Batcher, FlushesWhenMaxBytesAreBuffered) {
  auto sink = std::make_shared<RecordingSink>();
  auto options = quick(1000);
  options.max_bytes = 30;  // three 10-byte items
  Batcher batcher(sink, options);
  for (int i = 0; i < 3; ++i) batcher.add("\"" + std::string(8, 'x') + "\"");
  ASSERT_TRUE(wait_until([&] { return sink->delivered().size() == 3; }, 10s));
  EXPECT_EQ(sink->batch_sizes(), (std::vector<std::size_t>{3}));
}

TEST(Batcher, FlushesWhenTheOldestItemReachesMaxAge) {
  auto sink = std::make_shared<RecordingSink>();
  auto options = quick(1000);
  options.max_age = 50ms;
  Batcher batcher(sink, options);
  batcher.add(item(1));
  ASSERT_TRUE(wait_until([&] { return sink->delivered().size() == 1; }, 10s));
}

TEST(Batcher, FlushReturnsOnceEverythingAddedBeforeItIsDelivered) {
  auto sink = std::make_shared<RecordingSink>();
  Batcher batcher(sink, quick(1000));
  for (int i = 0; i < 7; ++i) batcher.add(item(i));
  EXPECT_TRUE(batcher.flush());
  EXPECT_EQ(sink->delivered().size(), 7u);
  EXPECT_EQ(batcher.stats().delivered, 7u);
  EXPECT_EQ(batcher.stats().pending, 0u);
}

TEST(Batcher, AddWaitsForRoomAndRaisesBatcherFullOnTimeout) {
  auto sink = std::make_shared<RecordingSink>();
  Gate gate;
  sink->gate = &gate;
  auto options = quick(2);
  options.capacity = 4;
  Batcher batcher(sink, options);
  for (int i = 0; i < 4; ++i) batcher.add(item(i));
  EXPECT_THROW(batcher.add(item(4), 0ms), BatcherFull);
  EXPECT_THROW(batcher.add(item(4), 20ms), BatcherFull);
  std::atomic<bool> added{false};
  std::thread producer([&] {
    batcher.add(item(4));  // blocks until the sink takes a batch
    added = true;
  });
  gate.open();
  producer.join();
  EXPECT_TRUE(added);
  batcher.close();
  EXPECT_EQ(sink->delivered().size(), 5u);
}

TEST(Batcher, CloseFlushesEverythingAndRefusesMoreItems) {
  auto sink = std::make_shared<RecordingSink>();
  Batcher batcher(sink, quick(1000));
  for (int i = 0; i < 3; ++i) batcher.add(item(i));
  batcher.close();
  batcher.close();  // safe twice
  EXPECT_EQ(sink->delivered().size(), 3u);
  EXPECT_THROW(batcher.add(item(9)), BatcherClosed);
  EXPECT_TRUE(batcher.flush());
}

TEST(Batcher, RetriesOnlyTheItemsTheSinkAsksToRetry) {
  auto sink = std::make_shared<RecordingSink>();
  std::atomic<int> round{0};
  // First call: odd items retried; later calls: everything delivered.
  sink->decide = [&](std::span<const std::string> items) {
    std::vector<ItemResult> out(items.size());
    if (round++ == 0) {
      for (std::size_t i = 1; i < items.size(); i += 2) out[i] = {ItemOutcome::kRetry, "busy"};
    }
    return out;
  };
  Batcher batcher(sink, quick(4));
  for (int i = 0; i < 4; ++i) batcher.add(item(i));
  ASSERT_TRUE(batcher.flush());
  EXPECT_EQ(sink->batch_sizes(), (std::vector<std::size_t>{4, 2}));
  auto delivered = sink->delivered();
  EXPECT_EQ(std::set<std::string>(delivered.begin(), delivered.end()).size(), 4u);
  EXPECT_EQ(batcher.stats().retried, 2u);
  EXPECT_EQ(batcher.stats().delivered, 4u);
}

TEST(Batcher, DeadLettersFailedItemsAndItemsOutOfAttempts) {
  test::TempDir dir;
  const std::string path = dir.path() + "/dead.jsonl";
  auto sink = std::make_shared<RecordingSink>();
  // Item 0 is refused for good, item 1 always asks for a retry, item 2 is delivered.
  sink->decide = [](std::span<const std::string> items) {
    std::vector<ItemResult> out(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (items[i] == item(0)) out[i] = {ItemOutcome::kFailed, "mapper_parsing_exception"};
      if (items[i] == item(1)) out[i] = {ItemOutcome::kRetry, "overloaded"};
    }
    return out;
  };
  auto options = quick(3);
  options.max_attempts = 3;
  Batcher batcher(sink, options, make_jsonl_dead_letter(path));
  for (int i = 0; i < 3; ++i) batcher.add(item(i));
  ASSERT_TRUE(batcher.flush());
  const auto stats = batcher.stats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.dead_lettered, 2u);
  EXPECT_EQ(stats.retried, 2u);  // item 1, after its first and second attempt
  EXPECT_EQ(stats.pending, 0u);
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"item\":{\"n\":0}"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("mapper_parsing_exception"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"attempts\":1"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"item\":{\"n\":1}"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"attempts\":3"), std::string::npos) << lines[1];
}

TEST(Batcher, AThrowingSinkRetriesTheWholeBatch) {
  auto sink = std::make_shared<RecordingSink>();
  std::atomic<int> calls{0};
  sink->decide = [&](std::span<const std::string>) -> std::vector<ItemResult> {
    if (calls++ < 2) throw Error("connection refused");
    return {};
  };
  Batcher batcher(sink, quick(5));
  for (int i = 0; i < 5; ++i) batcher.add(item(i));
  ASSERT_TRUE(batcher.flush());
  EXPECT_EQ(sink->delivered().size(), 5u);
  EXPECT_EQ(batcher.stats().retried, 10u);
  EXPECT_EQ(batcher.stats().batches, 3u);
}

TEST(Batcher, KeepsItemsInMemoryWhenTheDeadLetterFails) {
  auto sink = std::make_shared<RecordingSink>();
  sink->decide = [](std::span<const std::string> items) {
    return std::vector<ItemResult>(items.size(), {ItemOutcome::kFailed, "bad item"});
  };
  Batcher batcher(sink, quick(2), std::make_shared<FailingDeadLetter>());
  batcher.add(item(1));
  batcher.add(item(2));
  ASSERT_TRUE(batcher.flush());
  EXPECT_EQ(batcher.stats().undelivered, 2u);
  EXPECT_EQ(batcher.stats().dead_lettered, 0u);
  const auto kept = batcher.undelivered();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].item, item(1));
  EXPECT_EQ(kept[0].error, "bad item");
}

TEST(Batcher, DeliversItemsFromManyThreadsExactlyOnce) {
  auto sink = std::make_shared<RecordingSink>();
  auto options = quick(100);
  options.capacity = 300;  // small, so producers meet back-pressure
  Batcher batcher(sink, options);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) batcher.add(item(t * kPerThread + i));
    });
  }
  for (auto& p : producers) p.join();
  batcher.close();
  const auto delivered = sink->delivered();
  const std::set<std::string> unique(delivered.begin(), delivered.end());
  EXPECT_EQ(delivered.size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(unique.size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(batcher.stats().delivered, static_cast<std::uint64_t>(kThreads * kPerThread));
}

TEST(Batcher, RefusesInvalidOptions) {
  auto sink = std::make_shared<RecordingSink>();
  auto options = quick(10);
  options.capacity = 5;
  EXPECT_THROW(Batcher(sink, options), ConfigError);
  options = quick(10);
  options.max_attempts = 0;
  EXPECT_THROW(Batcher(sink, options), ConfigError);
  EXPECT_THROW(Batcher(nullptr, quick(10)), ConfigError);
}

}  // namespace
}  // namespace cinejobs
