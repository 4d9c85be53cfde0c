// Cron expressions and the time zones they are read in. CronExpression parses the classic five
// fields (minute hour day-of-month month day-of-week), or six with a leading seconds field, with
// ranges, steps, lists, month and weekday names and the @yearly/@monthly/@weekly/@daily/@hourly
// macros; day-of-month and day-of-week combine as Vixie cron does (either may match when both
// are restricted). next_after finds the next fire instant in a TimeZone, across daylight-saving
// changes:
// - a wall time skipped by a spring-forward gap fires once, at the first instant after the gap;
// - a wall time repeated by a fall-back fires once, at its first occurrence;
// - but when the hour field is unrestricted ('*') the expression follows real time, as Vixie
//   cron and croniter do: minutes inside a gap do not fire, and a repeated hour fires twice.
// Costs: parsing is linear in the text; next_after walks calendar days and, within the first
// matching day, hours and minutes; it never scans more than eight years.
#pragma once

#include <bitset>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cinejobs/job.hpp"

namespace cinejobs {

namespace detail {
struct ZoneData;  // the zone's rules (a date::time_zone), private to cron.cpp
}

// TimeZone: an IANA time zone from the system's zoneinfo (tzdata). Cheap to copy.
class TimeZone {
 public:
  // utc is the default zone of a schedule.
  static TimeZone utc();
  // locate throws ConfigError for a name the zoneinfo database does not know.
  static TimeZone locate(std::string_view name);

  const std::string& name() const noexcept { return name_; }
  const detail::ZoneData& data() const noexcept { return *data_; }

 private:
  TimeZone(std::string name, std::shared_ptr<const detail::ZoneData> data)
      : name_(std::move(name)), data_(std::move(data)) {}
  std::string name_;
  std::shared_ptr<const detail::ZoneData> data_;
};

class CronExpression {
 public:
  // parse throws ConfigError naming the field, its text and what is wrong, e.g.
  // cron field 'hour' ("25"): value 25 out of range 0-23.
  static CronExpression parse(std::string_view text);

  // next_after returns the first fire instant (epoch ms, whole seconds) strictly after `after`,
  // reading the fields as wall time in `zone`; nullopt when none comes within eight years
  // (e.g. "0 0 30 2 *").
  std::optional<EpochMs> next_after(EpochMs after, const TimeZone& zone) const;

  const std::string& text() const noexcept { return text_; }
  bool has_seconds() const noexcept { return has_seconds_; }

 private:
  CronExpression() = default;
  friend struct CronSearch;

  std::string text_;
  bool has_seconds_ = false;
  std::bitset<60> seconds_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;   // 1..31
  std::bitset<13> months_;          // 1..12
  std::bitset<7> days_of_week_;     // 0 = Sunday
  bool day_of_month_star_ = false;  // field began with '*': Vixie's AND instead of OR
  bool day_of_week_star_ = false;
};

}  // namespace cinejobs
