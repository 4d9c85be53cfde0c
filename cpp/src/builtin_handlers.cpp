// Native handlers every worker knows. cinejobs.noop measures the engine without handler cost;
// cinejobs.sleep stands in for slow work in tests and demos and shows how a native handler
// reports progress and honours its cancel token; cinejobs.prune is the scheduler's built-in
// clean-up.
#include <simdjson.h>

#include <algorithm>
#include <thread>

#include "cinejobs/errors.hpp"
#include "cinejobs/worker.hpp"

namespace cinejobs {
namespace {

double sleep_seconds(const std::string& kwargs) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  double seconds = -1;
  if (parser.parse(kwargs)["seconds"].get(element) || !element.is_number() ||
      element.get_double().get(seconds) || seconds < 0) {
    // A call with the wrong arguments fails the same way every time: no retry.
    throw HandlerError("TypeError", "cinejobs.sleep needs kwargs {\"seconds\": <number >= 0>}",
                       "", std::nullopt, FailureAction::kFail);
  }
  return seconds;
}

std::string run_sleep(JobContext& ctx) {
  using namespace std::chrono;
  const double seconds = sleep_seconds(ctx.job().kwargs);
  const auto start = steady_clock::now();
  const auto total = duration_cast<milliseconds>(duration<double>(seconds));
  auto next_report = start;
  for (;;) {
    const auto elapsed = duration_cast<milliseconds>(steady_clock::now() - start);
    const double fraction = total.count() == 0
                                ? 1.0
                                : std::min(1.0, static_cast<double>(elapsed.count()) /
                                                    static_cast<double>(total.count()));
    if (steady_clock::now() >= next_report || elapsed >= total) {
      ctx.progress(fraction, "sleeping");  // throws once the job is cancelled or timed out
      next_report = steady_clock::now() + milliseconds(100);
    }
    if (elapsed >= total) break;
    if (ctx.cancel_requested()) ctx.progress(fraction, "sleeping");
    std::this_thread::sleep_for(std::min(milliseconds(10), total - elapsed));
  }
  return "null";
}

// run_prune deletes finished jobs past the broker's result_ttl and schedule history older than
// kwargs' history_retention_ms; the built-in prune schedule enqueues it.
std::string run_prune(JobContext& ctx) {
  simdjson::dom::parser parser;
  std::int64_t retention_ms = 0;
  if (parser.parse(ctx.job().kwargs)["history_retention_ms"].get(retention_ms) ||
      retention_ms < 0) {
    throw HandlerError("TypeError",
                       "cinejobs.prune needs kwargs {\"history_retention_ms\": <integer >= 0>}",
                       "", std::nullopt, FailureAction::kFail);
  }
  const std::size_t jobs = ctx.broker().prune_finished();
  const std::size_t ticks = ctx.broker().prune_schedule_history(now_ms() - retention_ms);
  return "{\"jobs\": " + std::to_string(jobs) + ", \"ticks\": " + std::to_string(ticks) + "}";
}

}  // namespace

void register_builtin_handlers(Worker& worker) {
  worker.register_handler("cinejobs.noop", [](JobContext&) { return std::string("null"); });
  worker.register_handler("cinejobs.sleep", run_sleep);
  worker.register_handler("cinejobs.prune", run_prune);
}

}  // namespace cinejobs
