// Native handlers every worker knows. cinejobs.noop measures the engine without handler cost;
// cinejobs.sleep stands in for slow work in tests and demos and shows how a native handler
// reports progress and honours its cancel token.
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
    throw HandlerError("ValueError", "cinejobs.sleep needs kwargs {\"seconds\": <number >= 0>}");
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

}  // namespace

void register_builtin_handlers(Worker& worker) {
  worker.register_handler("cinejobs.noop", [](JobContext&) { return std::string("null"); });
  worker.register_handler("cinejobs.sleep", run_sleep);
}

}  // namespace cinejobs
