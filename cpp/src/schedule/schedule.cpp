#include "cinejobs/schedule.hpp"

#include <deque>

#include "cinejobs/errors.hpp"

namespace cinejobs {
namespace {

std::string describe_interval(std::chrono::milliseconds every) {
  const auto ms = every.count();
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

ScheduleTiming ScheduleTiming::cron(std::string_view expression, std::string_view zone) {
  return ScheduleTiming(CronTiming{CronExpression::parse(expression), TimeZone::locate(zone)});
}

ScheduleTiming ScheduleTiming::every(std::chrono::milliseconds interval, EpochMs anchor) {
  if (interval.count() <= 0) {
    throw ConfigError("schedule interval must be positive, got " +
                      std::to_string(interval.count()) + " ms");
  }
  return ScheduleTiming(IntervalTiming{interval, anchor});
}

ScheduleTiming ScheduleTiming::once(EpochMs at) { return ScheduleTiming(OnceTiming{at}); }

std::optional<EpochMs> ScheduleTiming::next_after(EpochMs after) const {
  if (const auto* c = std::get_if<CronTiming>(&timing_)) return c->cron.next_after(after, c->zone);
  if (const auto* i = std::get_if<IntervalTiming>(&timing_)) {
    const std::int64_t every = i->every.count();
    const std::int64_t since = after - i->anchor;
    // Floor division, so instants before the anchor land on the same grid.
    const std::int64_t k = since >= 0 ? since / every : -((-since + every - 1) / every);
    return i->anchor + (k + 1) * every;
  }
  const auto& once = std::get<OnceTiming>(timing_);
  if (after < once.at) return once.at;
  return std::nullopt;
}

std::optional<EpochMs> ScheduleTiming::once_at() const {
  if (const auto* once = std::get_if<OnceTiming>(&timing_)) return once->at;
  return std::nullopt;
}

std::string ScheduleTiming::describe() const {
  if (const auto* c = std::get_if<CronTiming>(&timing_)) {
    return "cron " + c->cron.text() + " (" + c->zone.name() + ")";
  }
  if (const auto* i = std::get_if<IntervalTiming>(&timing_)) {
    return "every " + describe_interval(i->every);
  }
  return "once at " + std::to_string(std::get<OnceTiming>(timing_).at);
}

std::vector<EpochMs> due_ticks(const ScheduleTiming& timing, EpochMs last, EpochMs now,
                               const MisfirePolicy& policy) {
  // Ticks older than the grace are dropped whatever happens, so the walk starts there.
  EpochMs from = last;
  if (policy.grace) from = std::max(from, now - policy.grace->count() - 1);
  const std::size_t keep = std::max<std::size_t>(policy.catch_up, 1);
  std::deque<EpochMs> ticks;
  for (auto tick = timing.next_after(from); tick && *tick <= now; tick = timing.next_after(*tick)) {
    ticks.push_back(*tick);
    if (ticks.size() > keep) ticks.pop_front();
  }
  return {ticks.begin(), ticks.end()};
}

std::string tick_unique_key(const std::string& schedule, EpochMs tick) {
  return "schedule:" + schedule + ":" + std::to_string(tick);
}

}  // namespace cinejobs
