// Unit tests of cron parsing, next-fire times (UTC and across daylight-saving changes), interval
// and one-off timings, and the misfire policy's choice of due ticks. The broad comparison with a
// reference implementation is tests/python/test_cron_reference.py.
#include "cinejobs/cron.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "cinejobs/errors.hpp"
#include "cinejobs/schedule.hpp"

using namespace cinejobs;
using namespace std::chrono_literals;

namespace {

// utc returns the epoch ms of a UTC calendar instant.
EpochMs utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  using namespace std::chrono;
  const sys_days date{year{y} / month{mo} / day{d}};
  return duration_cast<milliseconds>(date.time_since_epoch() + hours(h) + minutes(mi) + seconds(s))
      .count();
}

std::vector<EpochMs> fires(const std::string& expr, const std::string& zone, EpochMs after, int n) {
  const ScheduleTiming timing = ScheduleTiming::cron(expr, zone);
  std::vector<EpochMs> out;
  for (int i = 0; i < n; ++i) {
    const auto next = timing.next_after(after);
    if (!next) break;
    out.push_back(*next);
    after = *next;
  }
  return out;
}

std::string parse_error(const std::string& expr) {
  try {
    CronExpression::parse(expr);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CronParse, AnOutOfRangeValueNamesTheFieldAndTheRange) {
  EXPECT_EQ(parse_error("0 25 * * *"), "cron field 'hour' (\"25\"): value 25 out of range 0-23");
}

TEST(CronParse, BadExpressionsAreRefusedWithTheirReason) {
  EXPECT_NE(parse_error("* * * *").find("has 4 fields; expected 5"), std::string::npos);
  EXPECT_NE(parse_error("*/0 * * * *").find("cron field 'minute' (\"*/0\"): step '0'"),
            std::string::npos);
  EXPECT_NE(parse_error("0 0 * foo *").find("cron field 'month' (\"foo\")"), std::string::npos);
  EXPECT_NE(parse_error("0 0 L * *").find("'L', 'W' and '#' are not supported"), std::string::npos);
  EXPECT_NE(parse_error("0 5-2 * * *").find("runs backwards"), std::string::npos);
  EXPECT_NE(parse_error("0 0 1,,2 * *").find("an empty list item"), std::string::npos);
  EXPECT_NE(parse_error("@fortnightly").find("unknown cron macro"), std::string::npos);
  EXPECT_NE(parse_error("0 0 0 * *").find("value 0 out of range 1-31"), std::string::npos);
}

TEST(CronParse, AnUnknownTimeZoneIsRefused) {
  try {
    ScheduleTiming::cron("0 0 * * *", "Mars/Olympus_Mons");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown time zone 'Mars/Olympus_Mons'"),
              std::string::npos);
  }
}

TEST(CronNext, StepsRangesListsAndNames) {
  EXPECT_EQ(fires("*/15 * * * *", "UTC", utc(2024, 1, 1, 0, 7), 2),
            (std::vector{utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 30)}));
  EXPECT_EQ(fires("0 9-17/4 * * mon-fri", "UTC", utc(2024, 1, 5, 14), 3),  // a Friday
            (std::vector{utc(2024, 1, 5, 17), utc(2024, 1, 8, 9), utc(2024, 1, 8, 13)}));
  EXPECT_EQ(fires("0 0 1 jan,jul *", "UTC", utc(2024, 2, 1), 2),
            (std::vector{utc(2024, 7, 1), utc(2025, 1, 1)}));
  EXPECT_EQ(fires("0 0 29 2 *", "UTC", utc(2023, 3, 1), 1), (std::vector{utc(2024, 2, 29)}));
  EXPECT_EQ(fires("0 0 * * 7", "UTC", utc(2024, 1, 1), 1), (std::vector{utc(2024, 1, 7)}));
}

TEST(CronNext, DayOfMonthAndDayOfWeekBothRestrictedMatchEither) {
  // 13th of the month or any Friday (Vixie cron); 2024-09-06 is a Friday.
  EXPECT_EQ(fires("0 0 13 * fri", "UTC", utc(2024, 9, 1), 3),
            (std::vector{utc(2024, 9, 6), utc(2024, 9, 13), utc(2024, 9, 20)}));
  // With one of them '*', both must match: Fridays that are the 13th.
  EXPECT_EQ(fires("0 0 13 */1 fri", "UTC", utc(2024, 9, 1), 1), (std::vector{utc(2024, 9, 6)}));
}

TEST(CronNext, MacrosAndASecondsField) {
  EXPECT_EQ(fires("@daily", "UTC", utc(2024, 1, 1, 5), 1), (std::vector{utc(2024, 1, 2)}));
  EXPECT_EQ(fires("@hourly", "UTC", utc(2024, 1, 1, 5, 1), 1), (std::vector{utc(2024, 1, 1, 6)}));
  EXPECT_EQ(fires("*/20 * * * * *", "UTC", utc(2024, 1, 1, 0, 0, 5), 3),
            (std::vector{utc(2024, 1, 1, 0, 0, 20), utc(2024, 1, 1, 0, 0, 40),
                         utc(2024, 1, 1, 0, 1, 0)}));
}

TEST(CronNext, AnImpossibleDateHasNoNextFire) {
  EXPECT_FALSE(ScheduleTiming::cron("0 0 30 2 *").next_after(utc(2024, 1, 1)).has_value());
}

TEST(CronDst, AWallTimeInASpringForwardGapFiresOnceWhenTheGapEnds) {
  // Paris, 2024-03-31: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
  EXPECT_EQ(fires("30 2 * * *", "Europe/Paris", utc(2024, 3, 30, 11), 2),
            (std::vector{utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)}));
  // Every quarter hour: the gap has none of them, and 03:00 CEST is the next.
  EXPECT_EQ(fires("*/15 * * * *", "Europe/Paris", utc(2024, 3, 31, 0, 40), 3),
            (std::vector{utc(2024, 3, 31, 0, 45), utc(2024, 3, 31, 1), utc(2024, 3, 31, 1, 15)}));
  // Every hour at :30: real time has no 02:30 that night, so none fires for it.
  EXPECT_EQ(fires("30 * * * *", "Europe/Paris", utc(2024, 3, 31, 0, 40), 2),
            (std::vector{utc(2024, 3, 31, 1, 30), utc(2024, 3, 31, 2, 30)}));
  // New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
  EXPECT_EQ(fires("30 2 * * *", "America/New_York", utc(2024, 3, 9, 12), 2),
            (std::vector{utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30)}));
}

TEST(CronDst, AFixedWallTimeRepeatedByAFallBackFiresOnce) {
  // Paris, 2024-10-27: 03:00 CEST goes back to 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
  EXPECT_EQ(fires("30 2 * * *", "Europe/Paris", utc(2024, 10, 26, 10), 2),
            (std::vector{utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)}));
  // New York, 2024-11-03: 01:30 happens at 05:30 and 06:30 UTC.
  EXPECT_EQ(fires("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), 2),
            (std::vector{utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)}));
}

TEST(CronDst, AnHourlyExpressionFiresInBothPassesOfARepeatedHour) {
  EXPECT_EQ(fires("0 * * * *", "Europe/Paris", utc(2024, 10, 26, 22, 40), 4),
            (std::vector{utc(2024, 10, 26, 23), utc(2024, 10, 27, 0), utc(2024, 10, 27, 1),
                         utc(2024, 10, 27, 2)}));
}

TEST(IntervalTiming, TicksAreMultiplesOfTheIntervalFromTheAnchor) {
  const ScheduleTiming every = ScheduleTiming::every(10s);
  EXPECT_EQ(every.next_after(12'345), 20'000);
  EXPECT_EQ(every.next_after(20'000), 30'000);
  EXPECT_EQ(ScheduleTiming::every(10s, 3'000).next_after(12'345), 13'000);
  EXPECT_EQ(every.describe(), "every 10s");
  EXPECT_THROW(ScheduleTiming::every(0s), ConfigError);
}

TEST(OnceTiming, TicksOnceThenNever) {
  const ScheduleTiming once = ScheduleTiming::once(5'000);
  EXPECT_EQ(once.next_after(1'000), 5'000);
  EXPECT_FALSE(once.next_after(5'000).has_value());
}

TEST(DueTicks, MissedTicksCoalesceIntoTheLatestByDefault) {
  const ScheduleTiming every = ScheduleTiming::every(1s);
  EXPECT_EQ(due_ticks(every, 10'000, 15'500, {}), (std::vector<EpochMs>{15'000}));
  EXPECT_TRUE(due_ticks(every, 15'000, 15'500, {}).empty());
}

TEST(DueTicks, CatchUpEnqueuesTheLatestNOldestFirst) {
  const ScheduleTiming every = ScheduleTiming::every(1s);
  EXPECT_EQ(due_ticks(every, 10'000, 15'500, MisfirePolicy{std::nullopt, 3}),
            (std::vector<EpochMs>{13'000, 14'000, 15'000}));
  EXPECT_EQ(due_ticks(every, 10'000, 12'500, MisfirePolicy{std::nullopt, 5}),
            (std::vector<EpochMs>{11'000, 12'000}));
}

TEST(DueTicks, TicksLaterThanTheGraceAreDropped) {
  const ScheduleTiming every = ScheduleTiming::every(1s);
  EXPECT_EQ(due_ticks(every, 10'000, 15'500, MisfirePolicy{2s, 10}),
            (std::vector<EpochMs>{14'000, 15'000}));
  EXPECT_TRUE(due_ticks(every, 10'000, 15'900, MisfirePolicy{500ms, 10}).empty());
}

}  // namespace
