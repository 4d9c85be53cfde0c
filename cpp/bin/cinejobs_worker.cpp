// cinejobs-worker: the engine's worker with no Python in the process. It runs the native
// handlers compiled into libcinejobs (the builtins, and the TMDB handlers when they land) on
// any broker, stops gracefully on SIGTERM/SIGINT (a second signal quits at once), and prints a
// start line, a status line every few seconds and a stop report.
//
// It runs only native tasks: point it at queues that hold only those (a job of a task it does
// not know fails with UnknownTask, as on any worker that lacks the handler).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/metrics.hpp"
#include "cinejobs/metrics_http.hpp"
#include "cinejobs/redact.hpp"
#include "cinejobs/tmdb_pipeline.hpp"
#include "cinejobs/worker.hpp"

namespace {

using namespace std::chrono_literals;
using cinejobs::WorkerOptions;

constexpr int kExitUsage = 2;
constexpr std::string_view kDefaultBroker = "sqlite:///cinejobs.db";

constexpr std::string_view kUsage =
    "usage: cinejobs-worker [--broker URL] [--queues Q1,Q2] [--concurrency N] [--grace S]\n"
    "                       [--lease S] [--poll-interval S] [--max-batch N] [--status-every S]\n"
    "                       [--metrics-port P] [--metrics-host HOST]\n"
    "\n"
    "Run cinejobs' native handlers (cinejobs.noop, cinejobs.sleep, tmdb.enrich, ...) until\n"
    "SIGTERM or SIGINT, then stop gracefully: stop reserving, let running jobs finish within\n"
    "--grace seconds, return the rest to their queue. A second signal quits at once (the jobs\n"
    "still running return to the queue when their leases expire).\n"
    "\n"
    "  --broker URL         sqlite:///path.db, redis://host:port/db, postgresql://user@host/db\n"
    "                       (default: $CINEJOBS_BROKER, else sqlite:///cinejobs.db)\n"
    "  --queues Q1,Q2       queues to consume, in order (default: default)\n"
    "  --concurrency N      handler threads, and the most jobs held at once (default: 8)\n"
    "  --grace S            seconds running jobs get to finish on stop (default: 30)\n"
    "  --lease S            lease length in seconds, renewed by heartbeat (default: 30)\n"
    "  --poll-interval S    idle re-check period for brokers that cannot signal (default: 0.05)\n"
    "  --max-batch N        most jobs reserved per call (default: 256)\n"
    "  --status-every S     seconds between status lines; 0: none (default: 5)\n"
    "  --metrics-port P     serve Prometheus metrics at http://HOST:P/metrics while running\n"
    "  --metrics-host HOST  IPv4 address for --metrics-port (default: 0.0.0.0, every interface)\n"
    "  --help, --version\n"
    "\n"
    "TMDB enrichment (queue tmdb: tmdb.enrich, tmdb.sync) reads its settings from the\n"
    "environment: TMDB_API_KEY or TMDB_READ_TOKEN, TMDB_BASE_URL, TMDB_RATE_LIMIT (default\n"
    "40/10s, shared by every worker on the broker), CINEJOBS_FILM_STORE (default: the broker's\n"
    "database), CINEJOBS_SYNC_URL (an Elasticsearch base URL to index enriched films into).\n";

struct UsageError {
  std::string message;
};

double parse_seconds(std::string_view option, std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0) || value > 1e9) {
    throw UsageError{std::string(option) + " takes seconds >= 0, got '" + std::string(text) + "'"};
  }
  return value;
}

int parse_positive(std::string_view option, std::string_view text) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1) {
    throw UsageError{std::string(option) + " takes a whole number >= 1, got '" + std::string(text) +
                     "'"};
  }
  return value;
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
}

std::vector<std::string> parse_queues(std::string_view text) {
  std::vector<std::string> queues;
  std::string item;
  std::istringstream in{std::string(text)};
  while (std::getline(in, item, ',')) {
    const auto first = item.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    queues.push_back(item.substr(first, item.find_last_not_of(' ') - first + 1));
  }
  if (queues.empty()) {
    throw UsageError{"--queues names no queue: use a comma-separated list, e.g. default,tmdb"};
  }
  return queues;
}

struct Options {
  std::string broker;
  WorkerOptions worker;
  double status_every = 5;
  std::optional<int> metrics_port;
  std::string metrics_host = "0.0.0.0";
};

Options parse_args(int argc, char** argv) {
  Options options;
  const char* env_broker = std::getenv("CINEJOBS_BROKER");
  options.broker = env_broker != nullptr && *env_broker != '\0' ? env_broker : kDefaultBroker;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    std::string_view name = arg;
    const bool has_inline_value = arg.rfind("--", 0) == 0 && arg.find('=') != arg.npos;
    if (has_inline_value) {
      name = arg.substr(0, arg.find('='));
      value = arg.substr(arg.find('=') + 1);
    }
    auto next = [&]() -> std::string_view {
      if (has_inline_value) return value;
      if (i + 1 >= argc) throw UsageError{std::string(name) + " needs a value"};
      return argv[++i];
    };
    if (name == "--help" || name == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (name == "--version") {
      std::cout << "cinejobs-worker " << CINEJOBS_VERSION << "\n";
      std::exit(0);
    } else if (name == "--broker") {
      options.broker = next();
    } else if (name == "--queues") {
      options.worker.queues = parse_queues(next());
    } else if (name == "--concurrency") {
      options.worker.concurrency = parse_positive(name, next());
    } else if (name == "--grace") {
      options.worker.grace = to_ms(parse_seconds(name, next()));
    } else if (name == "--lease") {
      options.worker.lease = to_ms(parse_seconds(name, next()));
      if (options.worker.lease < 100ms) throw UsageError{"--lease must be at least 0.1 s"};
    } else if (name == "--poll-interval") {
      options.worker.poll_interval = to_ms(parse_seconds(name, next()));
    } else if (name == "--max-batch") {
      options.worker.max_batch = static_cast<std::size_t>(parse_positive(name, next()));
    } else if (name == "--status-every") {
      options.status_every = parse_seconds(name, next());
    } else if (name == "--metrics-port") {
      options.metrics_port = parse_positive(name, next());
      if (*options.metrics_port > 65535)
        throw UsageError{"--metrics-port takes a TCP port <= 65535"};
    } else if (name == "--metrics-host") {
      options.metrics_host = next();
    } else {
      throw UsageError{"unknown option '" + std::string(arg) + "' (see --help)"};
    }
  }
  return options;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

void log_line(const std::string& line) {
  std::printf("cinejobs-worker: %s\n", line.c_str());
  std::fflush(stdout);
}

// wait_for_signal blocks until SIGTERM or SIGINT arrives (they are blocked in every thread, so
// only this sigtimedwait takes them) or `timeout` passes; returns the signal or 0.
int wait_for_signal(const sigset_t& signals, std::chrono::milliseconds timeout) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  ts.tv_nsec = static_cast<long>((timeout.count() % 1000) * 1000000);
  const int sig = sigtimedwait(&signals, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals before any thread starts, so every thread inherits the mask and the
  // main thread alone receives them through sigtimedwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Options options;
  try {
    options = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cinejobs-worker: %s\n", e.message.c_str());
    return kExitUsage;
  }

  std::shared_ptr<cinejobs::Broker> broker;
  try {
    broker = cinejobs::open_broker(options.broker);
  } catch (const cinejobs::Error& e) {
    std::fprintf(stderr, "cinejobs-worker: %s\n", e.what());
    return kExitUsage;
  }
  cinejobs::Worker worker(broker, options.worker);
  cinejobs::register_builtin_handlers(worker);
  cinejobs::register_tmdb_handlers(worker, cinejobs::TmdbPipelineOptions::from_environment());
  auto metrics = std::make_shared<cinejobs::WorkerMetrics>();
  worker.add_observer(metrics);
  // The port is taken before the worker starts, so one in use fails before any job runs.
  std::unique_ptr<cinejobs::MetricsHttpServer> metrics_server;
  if (options.metrics_port) {
    try {
      metrics_server = std::make_unique<cinejobs::MetricsHttpServer>(
          cinejobs::MetricsHttpOptions{options.metrics_host, *options.metrics_port},
          [&worker, metrics, broker] {
            return cinejobs::render_metrics(metrics.get(), cinejobs::worker_gauges(worker),
                                            broker.get());
          });
    } catch (const cinejobs::Error& e) {
      std::fprintf(stderr, "cinejobs-worker: %s\n", e.what());
      return kExitUsage;
    }
  }
  worker.start();
  log_line("pid " + std::to_string(::getpid()) + " started: broker " +
           cinejobs::redact_url(broker->url()) + ", queues " + join(options.worker.queues) +
           ", concurrency " + std::to_string(options.worker.concurrency) +
           "; native tasks: cinejobs.noop, cinejobs.sleep, cinejobs.prune, tmdb.enrich, tmdb.sync");
  if (metrics_server) {
    metrics_server->start();
    log_line("metrics on http://" + metrics_server->host() + ":" +
             std::to_string(metrics_server->port()) + "/metrics");
  }

  const auto status_every = to_ms(options.status_every);
  int sig = 0;
  while (sig == 0) {
    sig = wait_for_signal(signals, status_every.count() > 0 ? status_every : 3600s);
    if (sig == 0 && status_every.count() > 0) {
      const auto s = worker.stats();
      log_line("processed " + std::to_string(s.succeeded + s.failed + s.cancelled) +
               " | succeeded " + std::to_string(s.succeeded) + " | failed " +
               std::to_string(s.failed) + " | retried " + std::to_string(s.retried) +
               " | running " + std::to_string(s.running));
    }
  }
  char grace[32];
  std::snprintf(grace, sizeof grace, "%g",
                static_cast<double>(options.worker.grace.count()) / 1000.0);
  log_line(std::string(sig == SIGTERM ? "SIGTERM" : "SIGINT") +
           " received, stopping: running jobs get up to " + grace +
           " s to finish, the rest go back to the queue (send it again to quit at once)");

  // stop() runs in its own thread so that a second signal is still taken meanwhile.
  std::atomic<bool> stopped{false};
  cinejobs::StopReport report;
  std::thread stopper([&] {
    report = worker.stop();
    stopped.store(true);
  });
  while (!stopped.load()) {
    if (wait_for_signal(signals, 100ms) != 0) {
      log_line(
          "second signal: quitting now; jobs still running return to the queue when "
          "their leases expire");
      std::fflush(stdout);
      std::_Exit(130);
    }
  }
  stopper.join();
  if (metrics_server) metrics_server->stop();
  log_line("stopped: " + std::to_string(report.finished) + " running job(s) finished, " +
           std::to_string(report.returned) + " returned to the queue");
  if (!report.clean) {
    // A handler still busy past the grace cannot be interrupted; its job is already back in
    // the queue, so leave without joining it.
    std::fflush(stdout);
    std::_Exit(0);
  }
  return 0;
}
