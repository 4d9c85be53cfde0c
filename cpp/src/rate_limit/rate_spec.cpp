// parse_rate and gcra_limit: the one place a rate's text and a burst are checked.
#include <charconv>

#include "cinejobs/errors.hpp"
#include "cinejobs/rate_limiter.hpp"

namespace cinejobs {
namespace {

[[noreturn]] void bad_rate(std::string_view text, std::string_view why) {
  throw ConfigError("bad rate '" + std::string(text) + "': " + std::string(why) +
                    "; rates look like 20/s, 40/10s, 100/m, 5/h or 1000/d");
}

// parse_positive reads all of `digits` as an integer >= 1, or returns 0.
std::int64_t parse_positive(std::string_view digits) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size()) return 0;
  return value >= 1 ? value : 0;
}

struct Unit {
  std::string_view name;
  Micros length;
};
constexpr Unit kUnits[] = {{"ms", std::chrono::milliseconds(1)},
                           {"s", std::chrono::seconds(1)},
                           {"m", std::chrono::minutes(1)},
                           {"h", std::chrono::hours(1)},
                           {"d", std::chrono::hours(24)}};

}  // namespace

Rate parse_rate(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) bad_rate(text, "no '/' between count and period");
  Rate rate;
  rate.count = parse_positive(text.substr(0, slash));
  if (rate.count == 0) bad_rate(text, "the count before '/' must be a whole number >= 1");
  const std::string_view period = text.substr(slash + 1);
  const auto unit_at = period.find_first_not_of("0123456789");
  if (unit_at == std::string_view::npos) bad_rate(text, "the period has no unit (ms, s, m, h, d)");
  std::int64_t multiplier = 1;
  if (unit_at > 0) {
    multiplier = parse_positive(period.substr(0, unit_at));
    if (multiplier == 0 || multiplier > 1'000'000) {
      bad_rate(text, "the period's multiplier must be 1..1000000");
    }
  }
  const std::string_view unit = period.substr(unit_at);
  for (const Unit& u : kUnits) {
    if (u.name == unit) {
      rate.period = u.length * multiplier;
      return rate;
    }
  }
  bad_rate(text, "unknown period unit '" + std::string(unit) + "' (known: ms, s, m, h, d)");
}

std::string to_string(const Rate& rate) {
  // The largest unit that divides the period exactly, so parse_rate(to_string(r)) == r.
  for (auto u = std::rbegin(kUnits); u != std::rend(kUnits); ++u) {
    if (rate.period.count() % u->length.count() == 0) {
      const std::int64_t n = rate.period / u->length;
      return std::to_string(rate.count) + "/" + (n == 1 ? "" : std::to_string(n)) +
             std::string(u->name);
    }
  }
  return std::to_string(rate.count) + "/" + std::to_string(rate.period.count()) + "us";
}

GcraLimit gcra_limit(const Rate& rate, int burst) {
  if (burst < 1)
    throw ConfigError("rate limit burst must be at least 1, got " + std::to_string(burst));
  if (rate.count < 1 || rate.period <= Micros::zero()) {
    throw ConfigError("a rate needs a count >= 1 and a positive period");
  }
  const Micros interval = rate.period / rate.count;
  if (interval < Micros(1)) {
    throw ConfigError("rate " + to_string(rate) +
                      " is faster than one unit per microsecond, which cinejobs cannot time");
  }
  return GcraLimit{interval, interval * burst};
}

}  // namespace cinejobs
