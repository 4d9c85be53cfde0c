// Metrics tests: job events in, Prometheus text out (exact lines), the process-wide counters
// bumped by the parts that own them (batcher, rate limiter), a real Worker on SQLite observed by
// WorkerMetrics, a scrape that survives a broker gone away (a real redis-server stopped), and
// the HTTP server of the cinejobs-worker binary asked over a real socket.
#include "cinejobs/metrics.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cinejobs/batch_sinks.hpp"
#include "cinejobs/batcher.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/metrics_http.hpp"
#include "cinejobs/rate_limiter.hpp"
#include "cinejobs/worker.hpp"
#include "redis_server.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

// sample returns the value of the sample line that starts with `series` + " ", or -1.
double sample(const std::string& text, const std::string& series) {
  for (const auto& l : lines_of(text)) {
    if (l.size() > series.size() && l.compare(0, series.size(), series) == 0 &&
        l[series.size()] == ' ') {
      return std::stod(l.substr(series.size() + 1));
    }
  }
  return -1;
}

JobEvent event(JobEventKind kind, std::string task, std::string queue,
               std::chrono::microseconds duration = 0us, std::string error_type = "") {
  JobEvent e;
  e.kind = kind;
  e.id = "id";
  e.task = std::move(task);
  e.queue = std::move(queue);
  e.attempt = 1;
  e.max_attempts = 3;
  e.duration = duration;
  if (!error_type.empty()) e.error = JobFailure{std::move(error_type), "message", ""};
  return e;
}

// Every sample belongs to a family announced before it with # HELP and # TYPE.
void expect_well_formed(const std::string& text) {
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  for (const auto& l : lines_of(text)) {
    ASSERT_FALSE(l.empty()) << "empty line in:\n" << text;
    if (l.rfind("# HELP ", 0) == 0) {
      helped.insert(l.substr(7, l.find(' ', 7) - 7));
      continue;
    }
    if (l.rfind("# TYPE ", 0) == 0) {
      const auto name_end = l.find(' ', 7);
      const std::string name = l.substr(7, name_end - 7);
      EXPECT_TRUE(helped.contains(name)) << "# TYPE before # HELP for " << name;
      EXPECT_FALSE(types.contains(name)) << name << " announced twice";
      types[name] = l.substr(name_end + 1);
      continue;
    }
    std::string name = l.substr(0, l.find_first_of("{ "));
    if (!types.contains(name)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s(suffix);
        if (name.size() > s.size() && name.ends_with(s)) {
          const std::string base = name.substr(0, name.size() - s.size());
          if (types.contains(base) && types[base] == "histogram") name = base;
        }
      }
    }
    EXPECT_TRUE(types.contains(name)) << "sample without # TYPE: " << l;
  }
}

// ---------------------------------------------------------------------------------------------
// Events in, text out

TEST(WorkerMetrics, CountsEachOutcomeByTaskAndQueue) {
  WorkerMetrics m;
  m.on_job_event(event(JobEventKind::kStarted, "mail", "default"));
  m.on_job_event(event(JobEventKind::kStarted, "mail", "default"));
  m.on_job_event(event(JobEventKind::kStarted, "mail", "bulk"));
  m.on_job_event(event(JobEventKind::kSucceeded, "mail", "default", 2ms));
  m.on_job_event(event(JobEventKind::kRetried, "mail", "default", 3s, "JobTimeout"));
  m.on_job_event(event(JobEventKind::kFailed, "mail", "bulk", 1s, "JobTimeout"));
  m.on_job_event(event(JobEventKind::kFailed, "mail", "bulk", 0us, "WorkerCrashed"));
  m.on_job_event(event(JobEventKind::kRetried, "mail", "bulk", 1s, "ValueError"));
  m.on_job_event(event(JobEventKind::kCancelled, "mail", "default", 1s, "JobCancelled"));
  m.on_job_event(event(JobEventKind::kSnoozed, "mail", "default"));
  m.on_job_event(event(JobEventKind::kReleased, "mail", "default"));
  const std::string text = render_metrics(&m, std::nullopt, nullptr);
  expect_well_formed(text);
  for (const char* line : {
           R"(cinejobs_jobs_started_total{task="mail",queue="bulk"} 1)",
           R"(cinejobs_jobs_started_total{task="mail",queue="default"} 2)",
           R"(cinejobs_jobs_succeeded_total{task="mail",queue="bulk"} 0)",
           R"(cinejobs_jobs_succeeded_total{task="mail",queue="default"} 1)",
           R"(cinejobs_jobs_failed_total{task="mail",queue="bulk"} 2)",
           R"(cinejobs_jobs_failed_total{task="mail",queue="default"} 0)",
           R"(cinejobs_jobs_retried_total{task="mail",queue="bulk"} 1)",
           R"(cinejobs_jobs_retried_total{task="mail",queue="default"} 1)",
           R"(cinejobs_jobs_cancelled_total{task="mail",queue="default"} 1)",
           R"(cinejobs_jobs_snoozed_total{task="mail",queue="default"} 1)",
           R"(cinejobs_jobs_released_total{task="mail",queue="default"} 1)",
           R"(cinejobs_jobs_timed_out_total{task="mail",queue="bulk"} 1)",
           R"(cinejobs_jobs_timed_out_total{task="mail",queue="default"} 1)",
           R"(cinejobs_jobs_crashed_total{task="mail",queue="bulk"} 1)",
           R"(cinejobs_jobs_crashed_total{task="mail",queue="default"} 0)",
           "# TYPE cinejobs_jobs_started_total counter",
           "# TYPE cinejobs_job_duration_seconds histogram",
       }) {
    EXPECT_TRUE(has_line(text, line)) << "missing: " << line << "\nin:\n" << text;
  }
  // No gauges without a worker, no queue depth without a broker.
  EXPECT_EQ(text.find("cinejobs_jobs_running"), std::string::npos);
  EXPECT_EQ(text.find("cinejobs_queue_jobs"), std::string::npos);
}

TEST(WorkerMetrics, DurationHistogramCountsEndsThatRanAHandlerInInclusiveBuckets) {
  WorkerMetrics m;
  m.on_job_event(event(JobEventKind::kSucceeded, "t", "q", 250ms));  // exactly on le="0.25"
  m.on_job_event(event(JobEventKind::kRetried, "t", "q", 3s, "ValueError"));
  m.on_job_event(event(JobEventKind::kFailed, "t", "q", 700s, "ValueError"));  // past 10 min
  m.on_job_event(event(JobEventKind::kSnoozed, "t", "q"));                     // never ran
  m.on_job_event(event(JobEventKind::kStarted, "t", "q"));                     // not an end
  const std::string text = render_metrics(&m, std::nullopt, nullptr);
  const std::vector<std::pair<std::string, int>> buckets = {
      {"0.001", 0}, {"0.005", 0}, {"0.01", 0}, {"0.025", 0}, {"0.05", 0}, {"0.1", 0},
      {"0.25", 1},  {"0.5", 1},   {"1", 1},    {"2.5", 1},   {"5", 2},    {"10", 2},
      {"30", 2},    {"60", 2},    {"120", 2},  {"300", 2},   {"600", 2},  {"+Inf", 3}};
  for (const auto& [le, n] : buckets) {
    const std::string line =
        R"(cinejobs_job_duration_seconds_bucket{task="t",le=")" + le + R"("} )" + std::to_string(n);
    EXPECT_TRUE(has_line(text, line)) << "missing: " << line << "\nin:\n" << text;
  }
  EXPECT_TRUE(has_line(text, R"(cinejobs_job_duration_seconds_sum{task="t"} 703.25)")) << text;
  EXPECT_TRUE(has_line(text, R"(cinejobs_job_duration_seconds_count{task="t"} 3)")) << text;
}

TEST(WorkerMetrics, LabelValuesAreEscaped) {
  WorkerMetrics m;
  m.on_job_event(event(JobEventKind::kStarted, "say \"hi\"\\now\n", "q"));
  const std::string text = render_metrics(&m, std::nullopt, nullptr);
  EXPECT_TRUE(
      has_line(text, R"(cinejobs_jobs_started_total{task="say \"hi\"\\now\n",queue="q"} 1)"))
      << text;
}

TEST(RenderMetrics, GaugesAndProcessCountersWithTheirZeroSeries) {
  count_child_restart("crashed");
  count_child_restart("crashed");
  count_child_restart("max_jobs");
  const std::string text = render_metrics(nullptr, WorkerGauges{3, 5}, nullptr);
  expect_well_formed(text);
  EXPECT_TRUE(has_line(text, "cinejobs_jobs_running 3")) << text;
  EXPECT_TRUE(has_line(text, "cinejobs_worker_free_slots 5")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE cinejobs_jobs_running gauge")) << text;
  EXPECT_GE(sample(text, R"(cinejobs_child_restarts_total{cause="crashed"})"), 2) << text;
  EXPECT_GE(sample(text, R"(cinejobs_child_restarts_total{cause="max_jobs"})"), 1) << text;
  // Known causes are there before their first restart, so rate() has a series to read.
  EXPECT_GE(sample(text, R"(cinejobs_child_restarts_total{cause="hard_timeout"})"), 0) << text;
  EXPECT_GE(sample(text, R"(cinejobs_child_restarts_total{cause="max_memory"})"), 0) << text;
  EXPECT_GE(sample(text, "cinejobs_tmdb_429_pauses_total"), 0) << text;

  const double before = sample(text, R"(cinejobs_child_restarts_total{cause="crashed"})");
  count_child_restart("crashed");
  count_tmdb_429_pause();
  const std::string again = render_metrics(nullptr, std::nullopt, nullptr);
  EXPECT_EQ(sample(again, R"(cinejobs_child_restarts_total{cause="crashed"})"), before + 1);
  EXPECT_EQ(sample(again, "cinejobs_tmdb_429_pauses_total"),
            sample(text, "cinejobs_tmdb_429_pauses_total") + 1);
}

// ---------------------------------------------------------------------------------------------
// The parts that count process-wide

// RefusingSink takes items containing "ok" and refuses the rest for good.
class RefusingSink : public BatchSink {
 public:
  std::vector<ItemResult> write(std::span<const std::string> items) override {
    std::vector<ItemResult> out;
    for (const auto& item : items) {
      out.emplace_back(
          item.find("ok") != std::string::npos ? ItemOutcome::kDelivered : ItemOutcome::kFailed,
          item.find("ok") != std::string::npos ? "" : "not ok");
    }
    return out;
  }
  std::string describe() const override { return "refusing sink"; }
};

TEST(ProcessCounters, BatcherCountsItemsBatchesAndDeadLettersByName) {
  TempDir dir;
  BatcherOptions options;
  options.name = "metrics-test \"batcher\"";
  options.max_items = 4;
  options.max_age = 10s;
  {
    Batcher batcher(std::make_shared<RefusingSink>(), options,
                    make_jsonl_dead_letter(dir.path() + "/dead.jsonl"));
    for (const char* item : {"\"ok 1\"", "\"ok 2\"", "\"bad\"", "\"ok 3\""}) batcher.add(item);
    ASSERT_TRUE(batcher.flush(10s));
    batcher.add("\"bad again\"");
    ASSERT_TRUE(batcher.flush(10s));
    const BatcherStats stats = batcher.stats();
    ASSERT_EQ(stats.batches, 2u);
    ASSERT_EQ(stats.dead_lettered, 2u);
  }
  const std::string text = render_metrics(nullptr, std::nullopt, nullptr);
  EXPECT_TRUE(
      has_line(text, R"(cinejobs_batcher_items_total{batcher="metrics-test \"batcher\""} 5)"))
      << text;
  EXPECT_TRUE(
      has_line(text, R"(cinejobs_batcher_batches_total{batcher="metrics-test \"batcher\""} 2)"))
      << text;
  EXPECT_TRUE(has_line(
      text, R"(cinejobs_batcher_dead_lettered_total{batcher="metrics-test \"batcher\""} 2)"))
      << text;
}

TEST(ProcessCounters, RateLimiterCountsWaitsAndSnoozesByLimiterName) {
  RateLimiter limiter(make_local_rate_limit_store(), "metrics-test-limiter", Rate{1, 50ms}, 1);
  ASSERT_TRUE(limiter.try_acquire().allowed);
  // A refused try_acquire alone is not a wait: nobody was held back yet.
  const RateDecision refused = limiter.try_acquire();
  ASSERT_FALSE(refused.allowed);
  EXPECT_EQ(sample(render_metrics(nullptr, std::nullopt, nullptr),
                   R"(cinejobs_rate_limit_waits_total{limiter="metrics-test-limiter"})"),
            -1);
  (void)limiter.snooze_delay(refused.wait);  // a job held back: one wait
  ASSERT_TRUE(limiter.acquire());            // had to wait for the next unit: one more
  const std::string text = render_metrics(nullptr, std::nullopt, nullptr);
  EXPECT_TRUE(
      has_line(text, R"(cinejobs_rate_limit_waits_total{limiter="metrics-test-limiter"} 2)"))
      << text;
}

// ---------------------------------------------------------------------------------------------
// A real worker

class WorkerMetricsOnSqlite : public ::testing::Test {
 protected:
  void SetUp() override { broker_ = open_broker(sqlite_url(dir_.path())); }

  std::string enqueue(std::string task, int max_attempts, std::int64_t timeout_ms = 0) {
    Job job = make_job(std::move(task));
    job.max_attempts = max_attempts;
    job.timeout_ms = timeout_ms;
    return broker_->enqueue(job).id;
  }

  TempDir dir_;
  std::shared_ptr<Broker> broker_;
};

TEST_F(WorkerMetricsOnSqlite, CountersMoveAsAWorkerRunsJobs) {
  WorkerOptions options;
  options.queues = {"default"};
  options.concurrency = 3;
  options.heartbeat = 20ms;
  options.poll_interval = 10ms;
  options.worker_id = "metrics-test";
  Worker worker(broker_, options);
  HandlerOptions fast_retry;
  fast_retry.retry_backoff = 1ms;
  fast_retry.retry_backoff_max = 1ms;
  std::atomic<int> flaky_calls{0};
  worker.register_handler(
      "ok", [](JobContext&) { return std::string("null"); }, fast_retry);
  worker.register_handler(
      "boom", [](JobContext&) -> std::string { throw std::runtime_error("boom"); }, fast_retry);
  worker.register_handler(
      "flaky",
      [&](JobContext&) -> std::string {
        if (flaky_calls++ == 0) throw std::runtime_error("first time");
        return "1";
      },
      fast_retry);
  worker.register_handler(
      "slow",
      [](JobContext& ctx) -> std::string {
        // Runs past its soft timeout until the token says so, then gives up.
        wait_until([&] { return ctx.cancel_requested(); }, 20s, 2ms);
        ctx.throw_if_stopped();
        return "null";
      },
      fast_retry);
  auto metrics = std::make_shared<WorkerMetrics>();
  worker.add_observer(metrics);

  for (int i = 0; i < 4; ++i) enqueue("ok", 1);
  enqueue("boom", 2);
  enqueue("flaky", 3);
  const std::string slow_id = enqueue("slow", 2, 50);

  // Before the worker runs: the queue depth is read from the broker at scrape time.
  const std::string queued = render_metrics(metrics.get(), worker_gauges(worker), broker_.get());
  expect_well_formed(queued);
  EXPECT_TRUE(has_line(queued, R"(cinejobs_queue_jobs{queue="default",state="queued"} 7)"))
      << queued;
  EXPECT_TRUE(has_line(queued, R"(cinejobs_queue_jobs{queue="default",state="running"} 0)"));
  EXPECT_TRUE(has_line(queued, "cinejobs_queue_depth_up 1"));
  EXPECT_TRUE(has_line(queued, "cinejobs_jobs_running 0"));
  EXPECT_TRUE(has_line(queued, "cinejobs_worker_free_slots 3"));

  worker.start();
  // Ends are reported once the broker stored them: poll the scrape itself.
  const std::vector<std::string> expected = {
      R"(cinejobs_jobs_started_total{task="ok",queue="default"} 4)",
      R"(cinejobs_jobs_succeeded_total{task="ok",queue="default"} 4)",
      R"(cinejobs_jobs_started_total{task="boom",queue="default"} 2)",
      R"(cinejobs_jobs_retried_total{task="boom",queue="default"} 1)",
      R"(cinejobs_jobs_failed_total{task="boom",queue="default"} 1)",
      R"(cinejobs_jobs_started_total{task="flaky",queue="default"} 2)",
      R"(cinejobs_jobs_retried_total{task="flaky",queue="default"} 1)",
      R"(cinejobs_jobs_succeeded_total{task="flaky",queue="default"} 1)",
      R"(cinejobs_jobs_retried_total{task="slow",queue="default"} 1)",
      R"(cinejobs_jobs_failed_total{task="slow",queue="default"} 1)",
      R"(cinejobs_jobs_timed_out_total{task="slow",queue="default"} 2)",
      R"(cinejobs_jobs_timed_out_total{task="boom",queue="default"} 0)",
      R"(cinejobs_job_duration_seconds_count{task="ok"} 4)",
      R"(cinejobs_job_duration_seconds_count{task="boom"} 2)",
      R"(cinejobs_job_duration_seconds_count{task="flaky"} 2)",
      R"(cinejobs_job_duration_seconds_count{task="slow"} 2)",
      R"(cinejobs_queue_jobs{queue="default",state="succeeded"} 5)",
      R"(cinejobs_queue_jobs{queue="default",state="failed"} 2)",
      R"(cinejobs_queue_jobs{queue="default",state="queued"} 0)",
      "cinejobs_jobs_running 0",
      "cinejobs_worker_free_slots 3",
  };
  std::string text;
  const bool all = wait_until(
      [&] {
        text = render_metrics(metrics.get(), worker_gauges(worker), broker_.get());
        for (const auto& line : expected) {
          if (!has_line(text, line)) return false;
        }
        return true;
      },
      20s, 10ms);
  for (const auto& line : expected) {
    EXPECT_TRUE(has_line(text, line)) << "missing: " << line;
  }
  EXPECT_TRUE(all) << text << "\nslow: " << to_json(get_job(*broker_, slow_id));
  worker.stop();
}

TEST(RenderMetrics, ABrokerThatFailsLeavesTheRestOfTheScrape) {
  if (!RedisServer::available() && !in_ci()) GTEST_SKIP() << "redis-server is not installed";
  RedisServer server;
  auto broker = open_broker(server.url(random_prefix()) + "&timeout_ms=300");
  broker->enqueue(make_job("t"));
  WorkerMetrics metrics;
  metrics.on_job_event(event(JobEventKind::kStarted, "t", "default"));
  const std::string up = render_metrics(&metrics, WorkerGauges{0, 2}, broker.get());
  EXPECT_TRUE(has_line(up, "cinejobs_queue_depth_up 1")) << up;
  EXPECT_TRUE(has_line(up, R"(cinejobs_queue_jobs{queue="default",state="queued"} 1)")) << up;

  server.stop();
  const std::string down = render_metrics(&metrics, WorkerGauges{0, 2}, broker.get());
  expect_well_formed(down);
  EXPECT_TRUE(has_line(down, "cinejobs_queue_depth_up 0")) << down;
  EXPECT_EQ(down.find("cinejobs_queue_jobs{"), std::string::npos) << down;
  EXPECT_TRUE(has_line(down, R"(cinejobs_jobs_started_total{task="t",queue="default"} 1)")) << down;
  EXPECT_TRUE(has_line(down, "cinejobs_worker_free_slots 2")) << down;
}

// ---------------------------------------------------------------------------------------------
// The binary's HTTP server

// http_request sends `request` to 127.0.0.1:port and returns everything the server answers
// until it closes the connection.
std::string http_request(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

TEST(MetricsHttpServer, AnswersGetMetricsWith200And404ElsewhereAndStopsTwice) {
  std::atomic<int> renders{0};
  MetricsHttpServer server(MetricsHttpOptions{"127.0.0.1", 0}, [&] {
    ++renders;
    return std::string("cinejobs_up 1\n");
  });
  ASSERT_NE(server.port(), 0);
  server.start();
  server.start();  // a second start does nothing

  const std::string ok =
      http_request(server.port(), "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos)
      << ok;
  EXPECT_NE(ok.find("\r\nContent-Length: 14\r\n"), std::string::npos) << ok;
  EXPECT_TRUE(ok.ends_with("\r\n\r\ncinejobs_up 1\n")) << ok;

  const std::string head = http_request(server.port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << head;
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << "HEAD has no body: " << head;

  const std::string missing = http_request(server.port(), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(missing.rfind("HTTP/1.0 404 Not Found\r\n", 0), 0u) << missing;
  EXPECT_EQ(renders.load(), 2);

  server.stop();
  server.stop();
  EXPECT_EQ(http_request(server.port(), "GET /metrics HTTP/1.0\r\n\r\n"), "")
      << "still answering after stop";
}

TEST(MetricsHttpServer, APortInUseIsAConfigErrorNamingIt) {
  MetricsHttpServer first(MetricsHttpOptions{"127.0.0.1", 0}, [] { return std::string(); });
  try {
    MetricsHttpServer second(MetricsHttpOptions{"127.0.0.1", first.port()},
                             [] { return std::string(); });
    ADD_FAILURE() << "two servers on one port";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(
        message.find("127.0.0.1:" + std::to_string(first.port()) + " (Address already in use)"),
        std::string::npos)
        << message;
  }
  EXPECT_THROW(MetricsHttpServer(MetricsHttpOptions{"localhost", 0}, [] { return std::string(); }),
               ConfigError);
}

TEST(MetricsHttpServer, ARenderThatThrowsAnswers500AndTheServerGoesOn) {
  std::atomic<bool> fail{true};
  MetricsHttpServer server(MetricsHttpOptions{"127.0.0.1", 0}, [&]() -> std::string {
    if (fail) throw std::runtime_error("broken counters");
    return "fine 1\n";
  });
  server.start();
  const std::string failed = http_request(server.port(), "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(failed.rfind("HTTP/1.0 500 ", 0), 0u) << failed;
  EXPECT_NE(failed.find("broken counters"), std::string::npos) << failed;
  fail = false;
  EXPECT_TRUE(http_request(server.port(), "GET /metrics HTTP/1.0\r\n\r\n").ends_with("fine 1\n"));
}

}  // namespace
