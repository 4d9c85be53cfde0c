#include "cinejobs/cron.hpp"

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <vector>

#include "cinejobs/errors.hpp"

namespace cinejobs {
namespace detail {

struct ZoneData {
  const date::time_zone* zone = nullptr;  // nullptr: UTC, which has no transitions
};

}  // namespace detail

namespace {

using std::chrono::seconds;
using LocalSeconds = date::local_seconds;
using SysSeconds = date::sys_seconds;

// One field of the expression: its name in messages, its range and the names it accepts.
struct FieldSpec {
  std::string_view name;
  int min;
  int max;
  std::array<std::string_view, 12> names;  // names[i] stands for min + i ('' where none)
  int name_base;
};

constexpr FieldSpec kSecond{"second", 0, 59, {}, 0};
constexpr FieldSpec kMinute{"minute", 0, 59, {}, 0};
constexpr FieldSpec kHour{"hour", 0, 23, {}, 0};
constexpr FieldSpec kDayOfMonth{"day-of-month", 1, 31, {}, 0};
constexpr FieldSpec kMonth{
    "month",
    1,
    12,
    {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
    1};
// 7 is Sunday too, as in every cron.
constexpr FieldSpec kDayOfWeek{
    "day-of-week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}, 0};

[[noreturn]] void field_error(const FieldSpec& spec, std::string_view text,
                              const std::string& what) {
  throw ConfigError("cron field '" + std::string(spec.name) + "' (\"" + std::string(text) +
                    "\"): " + what);
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// parse_value reads a number or, where the field has them, a three-letter name.
int parse_value(const FieldSpec& spec, std::string_view field, std::string_view text) {
  if (text.empty()) field_error(spec, field, "a value is missing");
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc() && end == text.data() + text.size()) {
    if (value < spec.min || value > spec.max) {
      field_error(spec, field,
                  "value " + std::string(text) + " out of range " + std::to_string(spec.min) + "-" +
                      std::to_string(spec.max));
    }
    return value;
  }
  const std::string name = lower(text);
  for (std::size_t i = 0; i < spec.names.size(); ++i) {
    if (!spec.names[i].empty() && spec.names[i] == name) {
      return spec.name_base + static_cast<int>(i);
    }
  }
  if (text == "L" || text == "W" || text.find_first_of("LW#") != std::string_view::npos) {
    field_error(spec, field, "'L', 'W' and '#' are not supported");
  }
  field_error(
      spec, field,
      "'" + std::string(text) + "' is not a number" + (spec.names[0].empty() ? "" : " or a name"));
}

// parse_field returns the set of values the field matches, as a bitset over 0..63.
std::uint64_t parse_field(const FieldSpec& spec, std::string_view field) {
  if (field.empty()) field_error(spec, field, "the field is empty");
  std::uint64_t bits = 0;
  std::size_t start = 0;
  while (start <= field.size()) {
    const std::size_t comma = std::min(field.find(',', start), field.size());
    const std::string_view item = field.substr(start, comma - start);
    if (item.empty()) field_error(spec, field, "an empty list item");
    std::string_view range = item;
    int step = 1;
    if (const std::size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      const std::string_view step_text = item.substr(slash + 1);
      const auto [end, ec] =
          std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
      if (ec != std::errc() || end != step_text.data() + step_text.size() || step < 1) {
        field_error(spec, field, "step '" + std::string(step_text) + "' is not a positive number");
      }
    }
    int low = spec.min;
    int high = spec.max;
    if (range == "*" || range == "?") {
      // the whole range
    } else if (const std::size_t dash = range.find('-'); dash != std::string_view::npos) {
      low = parse_value(spec, field, range.substr(0, dash));
      high = parse_value(spec, field, range.substr(dash + 1));
      if (low > high) {
        field_error(spec, field,
                    "range " + std::string(range) + " runs backwards (" + std::to_string(low) +
                        " > " + std::to_string(high) + ")");
      }
    } else {
      low = parse_value(spec, field, range);
      // "5/15" means from 5 to the end in steps of 15; a bare value is just itself.
      high = item.find('/') != std::string_view::npos ? spec.max : low;
    }
    for (int v = low; v <= high; v += step) bits |= std::uint64_t{1} << v;
    start = comma + 1;
  }
  return bits;
}

template <std::size_t N>
std::bitset<N> to_bits(std::uint64_t bits) {
  return std::bitset<N>(bits & ((N >= 64) ? ~std::uint64_t{0} : ((std::uint64_t{1} << N) - 1)));
}

std::string_view expand_macro(std::string_view text) {
  static constexpr std::pair<std::string_view, std::string_view> kMacros[] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  for (const auto& [macro, expansion] : kMacros) {
    if (text == macro) return expansion;
  }
  throw ConfigError("unknown cron macro \"" + std::string(text) +
                    "\": use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly");
}

std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const std::size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) fields.push_back(text.substr(start, i - start));
  }
  return fields;
}

}  // namespace

TimeZone TimeZone::utc() {
  static const auto data = std::make_shared<const detail::ZoneData>();
  return TimeZone("UTC", data);
}

TimeZone TimeZone::locate(std::string_view name) {
  if (name.empty() || name == "UTC") return utc();
  try {
    const date::time_zone* zone = date::locate_zone(name);
    return TimeZone(std::string(name), std::make_shared<const detail::ZoneData>(zone));
  } catch (const std::runtime_error&) {
    throw ConfigError("unknown time zone '" + std::string(name) +
                      "': use an IANA name such as 'Europe/Paris' or 'UTC' (is tzdata "
                      "installed?)");
  }
}

CronExpression CronExpression::parse(std::string_view text) {
  std::string_view body = text;
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.front()))) {
    body.remove_prefix(1);
  }
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.back()))) {
    body.remove_suffix(1);
  }
  if (!body.empty() && body.front() == '@') body = expand_macro(lower(body));
  std::vector<std::string_view> fields = split_fields(body);
  if (fields.size() != 5 && fields.size() != 6) {
    throw ConfigError("cron expression \"" + std::string(text) + "\" has " +
                      std::to_string(fields.size()) +
                      " fields; expected 5 (minute hour day-of-month month day-of-week) or 6 "
                      "(second first)");
  }
  CronExpression cron;
  cron.text_ = std::string(text);
  cron.has_seconds_ = fields.size() == 6;
  if (cron.has_seconds_) {
    cron.seconds_ = to_bits<60>(parse_field(kSecond, fields.front()));
    fields.erase(fields.begin());
  } else {
    cron.seconds_.set(0);
  }
  cron.minutes_ = to_bits<60>(parse_field(kMinute, fields[0]));
  cron.hours_ = to_bits<24>(parse_field(kHour, fields[1]));
  cron.days_of_month_ = to_bits<32>(parse_field(kDayOfMonth, fields[2]));
  cron.months_ = to_bits<13>(parse_field(kMonth, fields[3]));
  std::uint64_t dow = parse_field(kDayOfWeek, fields[4]);
  if (dow & (std::uint64_t{1} << 7)) dow |= 1;  // 7 is Sunday
  cron.days_of_week_ = to_bits<7>(dow);
  cron.day_of_month_star_ = fields[2].front() == '*' || fields[2].front() == '?';
  cron.day_of_week_star_ = fields[4].front() == '*' || fields[4].front() == '?';
  return cron;
}

// CronSearch: the calendar walk over wall times, then their mapping to instants in a zone.
struct CronSearch {
  const CronExpression& cron;

  bool day_matches(const date::year_month_day& ymd, date::weekday wd) const {
    const bool dom = cron.days_of_month_.test(static_cast<unsigned>(ymd.day()));
    const bool dow = cron.days_of_week_.test(wd.c_encoding());
    // Vixie cron: when both day fields are restricted a day matching either runs.
    if (cron.day_of_month_star_ || cron.day_of_week_star_) return dom && dow;
    return dom || dow;
  }

  // first_time_of_day: the earliest matching time of day at or after `from`.
  std::optional<seconds> first_time_of_day(seconds from) const {
    const auto total = from.count();
    const int h0 = static_cast<int>(total / 3600);
    const int m0 = static_cast<int>(total / 60 % 60);
    const int s0 = static_cast<int>(total % 60);
    for (int h = h0; h < 24; ++h) {
      if (!cron.hours_.test(static_cast<std::size_t>(h))) continue;
      for (int m = h == h0 ? m0 : 0; m < 60; ++m) {
        if (!cron.minutes_.test(static_cast<std::size_t>(m))) continue;
        for (int s = h == h0 && m == m0 ? s0 : 0; s < 60; ++s) {
          if (cron.seconds_.test(static_cast<std::size_t>(s)))
            return seconds(h * 3600 + m * 60 + s);
        }
      }
    }
    return std::nullopt;
  }

  // next_wall_time: the first wall time at or after `from` that the fields match.
  std::optional<LocalSeconds> next_wall_time(LocalSeconds from) const {
    date::local_days day = date::floor<date::days>(from);
    seconds time_of_day = from - day;
    const date::local_days limit = day + date::days(366 * 8);
    while (day <= limit) {
      const date::year_month_day ymd{day};
      if (!cron.months_.test(static_cast<unsigned>(ymd.month()))) {
        const date::year_month next = date::year_month(ymd.year(), ymd.month()) + date::months(1);
        day = date::local_days(next / date::day(1));
        time_of_day = seconds(0);
        continue;
      }
      if (day_matches(ymd, date::weekday(day))) {
        if (const auto t = first_time_of_day(time_of_day)) return day + *t;
      }
      day += date::days(1);
      time_of_day = seconds(0);
    }
    return std::nullopt;
  }

  LocalSeconds after_wall_time(LocalSeconds wall) const {
    // The next candidate after a wall time: the next second, or the next whole minute when the
    // expression has no seconds field.
    if (cron.has_seconds_) return wall + seconds(1);
    return date::floor<std::chrono::minutes>(wall) + std::chrono::minutes(1);
  }

  bool hour_unrestricted() const { return cron.hours_.all(); }

  std::optional<SysSeconds> next_in_utc(SysSeconds after) const {
    const auto wall = next_wall_time(after_wall_time(LocalSeconds(after.time_since_epoch())));
    if (!wall) return std::nullopt;
    return SysSeconds(wall->time_since_epoch());
  }

  std::optional<SysSeconds> next_in_zone(SysSeconds after, const date::time_zone& zone) const {
    std::optional<SysSeconds> best;
    // Walk wall times from the wall time of `after`; map each to the instants it names.
    auto candidate = after_wall_time(zone.to_local(after));
    for (int guard = 0; guard < 100000; ++guard) {
      const auto wall = next_wall_time(candidate);
      if (!wall) break;
      const date::local_info info = zone.get_info(*wall);
      const LocalSeconds w = *wall;
      if (info.result == date::local_info::unique) {
        const SysSeconds at(w.time_since_epoch() - info.first.offset);
        if (at > after) {
          best = at;
          break;
        }
      } else if (info.result == date::local_info::nonexistent) {
        // Skipped by a spring-forward gap: a fixed wall time fires once, when the gap ends; an
        // expression firing every hour follows real time, which has no such minutes.
        const SysSeconds at = info.second.begin;
        if (!hour_unrestricted() && at > after) {
          best = at;
          break;
        }
      } else {
        const SysSeconds first(w.time_since_epoch() - info.first.offset);
        const SysSeconds second(w.time_since_epoch() - info.second.offset);
        if (first > after) {
          best = first;
          break;
        }
        if (hour_unrestricted() && second > after) {
          best = second;
          break;
        }
      }
      candidate = after_wall_time(w);
    }
    // While `after` is in the first pass of a fall-back, the walk above has left the repeated
    // wall times behind; an expression firing every hour fires in their second pass too.
    if (hour_unrestricted()) {
      const date::sys_info now_info = zone.get_info(after);
      const date::sys_info next_info = zone.get_info(now_info.end);
      if (next_info.offset < now_info.offset && now_info.end > after) {
        const LocalSeconds repeat_begin(now_info.end.time_since_epoch() + next_info.offset);
        const LocalSeconds repeat_end(now_info.end.time_since_epoch() + now_info.offset);
        const auto wall = next_wall_time(repeat_begin);
        if (wall && *wall < repeat_end) {
          const SysSeconds second(wall->time_since_epoch() - next_info.offset);
          if (second > after && (!best || second < *best)) best = second;
        }
      }
    }
    return best;
  }
};

std::optional<EpochMs> CronExpression::next_after(EpochMs after, const TimeZone& zone) const {
  const SysSeconds after_s = date::floor<seconds>(
      date::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(after)));
  const CronSearch search{*this};
  const date::time_zone* tz = zone.data().zone;
  const auto at = tz == nullptr ? search.next_in_utc(after_s) : search.next_in_zone(after_s, *tz);
  if (!at) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(at->time_since_epoch()).count();
}

}  // namespace cinejobs
