"""Next-fire times of cinejobs' cron (the C++ core, through the binding) against croniter, the
reference, over a corpus of expressions, start instants and zones that includes daylight-saving
changes in Europe/Paris, America/New_York and Australia/Lord_Howe (whose shift is 30 minutes).

One documented divergence: on a fall-back day croniter fires a fixed wall time (``30 2 * * *``)
at both of its occurrences; cinejobs fires it once, at the first (the issue's rule, and Vixie
cron's for fixed times). Expressions whose hour field is ``*`` fire in both passes of the
repeated hour in both implementations. The reference below applies that one rule to croniter's
sequence; everything else is compared as croniter gives it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from cinejobs import _core

EXPRESSIONS = [
    "* * * * *",
    "*/5 * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 * * * *",
    "7,37 * * * *",
    "0 */2 * * *",
    "0 */3 * * *",
    "15 2 * * *",
    "30 2 * * *",
    "0 3 * * *",
    "45 1 * * *",
    "0 0 * * *",
    "0 9-17 * * mon-fri",
    "*/20 9-17/4 * * 1-5",
    "0 12 * * sun",
    "0 0 * * 7",
    "0 0 1 * *",
    "0 0 1,15 * *",
    "0 0 31 * *",
    "0 0 29 2 *",
    "0 0 13 * fri",
    "0 6 1-7 * mon",
    "0 0 1 jan,jul *",
    "5 4 * mar-oct sat",
    "0 22 * * 1-5",
    "59 23 31 12 *",
    "0 2 * * *",
    "30 1 * * *",
    "0,30 1-3 * * *",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
]

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]

# Start instants (UTC): ordinary days and the hours before each DST change of 2024.
STARTS = [
    dt.datetime(2024, 1, 15, 10, 17, 23, tzinfo=dt.UTC),
    dt.datetime(2024, 2, 28, 23, 59, 0, tzinfo=dt.UTC),
    dt.datetime(2024, 3, 30, 22, 10, 0, tzinfo=dt.UTC),  # Paris springs forward 03-31 01:00Z
    dt.datetime(2024, 3, 10, 5, 20, 0, tzinfo=dt.UTC),  # New York springs forward 03-10 07:00Z
    dt.datetime(2024, 10, 26, 22, 45, 0, tzinfo=dt.UTC),  # Paris falls back 10-27 01:00Z
    dt.datetime(2024, 11, 3, 4, 10, 0, tzinfo=dt.UTC),  # New York falls back 11-03 06:00Z
    dt.datetime(2024, 4, 6, 13, 40, 0, tzinfo=dt.UTC),  # Lord Howe falls back 04-07 15:00Z
    dt.datetime(2024, 10, 5, 14, 40, 0, tzinfo=dt.UTC),  # Lord Howe springs forward 10-05 15:30Z
]

FIRES = 4

CASES = list(itertools.product(EXPRESSIONS, ZONES, STARTS))


def _hour_field(expr: str) -> str:
    if expr.startswith("@"):
        return "*" if expr == "@hourly" else "0"
    return expr.split()[1]


def reference_fires(expr: str, zone: str, start: dt.datetime, n: int) -> list[int]:
    """croniter's next n fires (epoch ms), with a fixed wall time repeated by a fall-back
    fired once (the documented divergence)."""
    it = croniter(expr, start.astimezone(ZoneInfo(zone)))
    seen_walls: set[dt.datetime] = set()
    out: list[int] = []
    fixed_hour = _hour_field(expr) != "*"
    while len(out) < n:
        fire: dt.datetime = it.get_next(dt.datetime)
        wall = fire.replace(tzinfo=None)
        if fixed_hour and wall in seen_walls:
            continue
        seen_walls.add(wall)
        out.append(round(fire.timestamp() * 1000))
    return out


def our_fires(expr: str, zone: str, start: dt.datetime, n: int) -> list[int]:
    timing = _core.ScheduleTiming.cron(expr, zone)
    after = round(start.timestamp() * 1000)
    out: list[int] = []
    for _ in range(n):
        nxt = timing.next_after(after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


def test_the_corpus_is_large_and_crosses_dst_changes() -> None:
    assert len(CASES) >= 200
    dst_cases = [c for c in CASES if c[1] != "UTC" and c[2].month in (3, 4, 10, 11)]
    assert len({c[1] for c in dst_cases}) >= 2


def _fmt(ms: list[int], zone: str) -> list[str]:
    return [
        dt.datetime.fromtimestamp(m / 1000, tz=ZoneInfo(zone)).isoformat(timespec="minutes")
        for m in ms
    ]


@pytest.mark.parametrize("zone", ZONES)
def test_next_fire_times_match_the_reference(zone: str) -> None:
    mismatches = []
    compared = 0
    for expr, case_zone, start in CASES:
        if case_zone != zone:
            continue
        want = reference_fires(expr, zone, start, FIRES)
        got = our_fires(expr, zone, start, FIRES)
        compared += 1
        if got != want:
            mismatches.append(
                f"{expr!r} after {start.isoformat()}: got {_fmt(got, zone)}, "
                f"croniter {_fmt(want, zone)}"
            )
    assert compared == len(EXPRESSIONS) * len(STARTS)
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)


@pytest.mark.parametrize(
    ("expr", "croniter_expr"),
    [("*/10 * * * * *", "*/10 * * * * *"), ("30 15 10 * * *", "30 15 10 * * *")],
)
def test_a_leading_seconds_field_matches_the_reference(expr: str, croniter_expr: str) -> None:
    start = dt.datetime(2024, 3, 31, 0, 59, 41, tzinfo=dt.UTC)
    it = croniter(
        croniter_expr, start.astimezone(ZoneInfo("Europe/Paris")), second_at_beginning=True
    )
    want = [round(it.get_next(dt.datetime).timestamp() * 1000) for _ in range(5)]
    assert our_fires(expr, "Europe/Paris", start, 5) == want
