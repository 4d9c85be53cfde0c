"""Schedules: cron, interval and one-off timings for an app's tasks, and the scheduler that
enqueues their ticks.

A schedule is declared once (``@app.periodic``, ``app.schedule`` or
``app.configure_schedules``) and every scheduler process of the app runs it: each tick is
enqueued through the broker's ``enqueue_tick``, which stores it only when it is later than the
schedule's last recorded tick, in one atomic step. So any number of schedulers enqueue each
tick exactly once. Timings are checked where they are declared: a bad cron expression or time
zone raises ConfigError naming the field.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import _core
from .errors import ConfigError

__all__ = ["ScheduleSpec", "ScheduleStatus", "Scheduler", "parse_every"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_every(value: str | float | _dt.timedelta, what: str = "every") -> float:
    """Seconds of an interval given as ``"10s"``, ``"500ms"``, ``"5m"``, ``"2h"``, ``"1d"``, a
    timedelta or a number of seconds; ConfigError unless it is positive."""
    seconds: float
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ConfigError(f"{what} must be an interval such as '10s', got {value!r}")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _EVERY.match(value)
        if match is None:
            raise ConfigError(
                f"{what}={value!r} is not an interval: use a number and a unit (ms, s, m, h, "
                "d), e.g. '10s' or '5m'"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigError(
            f"{what} must be an interval such as '10s', a timedelta or seconds, got "
            f"{type(value).__qualname__}"
        )
    if not math.isfinite(seconds) or seconds < 0.001:
        raise ConfigError(f"{what} must be at least 1 ms, got {value!r}")
    return seconds


def grace_seconds(value: float | _dt.timedelta | None) -> float | None:
    """The misfire grace in seconds (None: no limit); ConfigError when negative."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, _dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError(f"grace must be seconds or a timedelta, got {type(value).__qualname__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"grace must be seconds >= 0, got {value!r}")
    return float(seconds)


def _epoch_ms(when: _dt.datetime | float) -> int:
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:
            raise ConfigError(
                f"run_at={when!r} has no time zone: give an aware datetime, e.g. "
                "datetime(..., tzinfo=ZoneInfo('Europe/Paris'))"
            )
        return round(when.timestamp() * 1000)
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise ConfigError(f"run_at must be a datetime or epoch seconds, got {when!r}")
    return round(when * 1000)


def make_timing(
    *,
    cron: str | None,
    every: str | float | _dt.timedelta | None,
    run_at: _dt.datetime | float | None,
    tz: str | None,
    where: str,
) -> tuple[_core.ScheduleTiming, str]:
    """The timing of a schedule and its zone name, from exactly one of cron, every, run_at."""
    given = [k for k, v in (("cron", cron), ("every", every), ("run_at", run_at)) if v is not None]
    if len(given) != 1:
        raise ConfigError(
            f"{where}: give exactly one of cron=, every= or run_at=, got "
            + (", ".join(given) or "none")
        )
    if tz is not None and cron is None:
        raise ConfigError(f"{where}: tz= applies to cron schedules only")
    try:
        if cron is not None:
            if not isinstance(cron, str):
                raise ConfigError(f"cron must be a string, got {type(cron).__qualname__}")
            zone = tz or "UTC"
            return _core.ScheduleTiming.cron(cron, zone), zone
        if every is not None:
            return _core.ScheduleTiming.every(parse_every(every)), "UTC"
        assert run_at is not None
        return _core.ScheduleTiming.once(_epoch_ms(run_at)), "UTC"
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ScheduleSpec:
    """A declared schedule: which task runs with what arguments, when, and the misfire policy
    (``grace``: seconds after which a missed tick is dropped, None for no limit; ``catch_up``:
    0 to run missed ticks once, N to run the latest N)."""

    name: str
    task: str
    timing: _core.ScheduleTiming
    tz: str
    args_json: str
    kwargs_json: str
    queue: str
    priority: int
    max_attempts: int
    timeout_ms: int
    grace: float | None
    catch_up: int

    @property
    def spec(self) -> str:
        """The timing as written: 'cron 0 2 * * * (Europe/Paris)', 'every 10s', …"""
        return self.timing.describe()

    def next_tick(self, after: _dt.datetime | None = None) -> _dt.datetime | None:
        """The first tick after ``after`` (default: now), as an aware UTC datetime."""
        after_ms = _core.now_ms() if after is None else _epoch_ms(after)
        nxt = self.timing.next_after(after_ms)
        return None if nxt is None else _from_ms(nxt)

    def as_core(self) -> tuple[Any, ...]:
        return (
            self.name,
            self.task,
            self.args_json,
            self.kwargs_json,
            self.queue,
            self.priority,
            self.max_attempts,
            self.timeout_ms,
            self.timing,
            self.grace,
            self.catch_up,
        )


@dataclass(frozen=True)
class ScheduleStatus:
    """A schedule's state as the broker records it: ``outcome`` is the state of the last tick's
    job (None before the first tick, 'pruned' once the job was deleted)."""

    name: str
    spec: str
    tz: str
    last_tick: _dt.datetime | None
    next_tick: _dt.datetime | None
    last_job_id: str | None
    outcome: str | None


def _from_ms(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)


def schedule_statuses(
    broker: _core.Broker,
    declared: Mapping[str, ScheduleSpec],
    *,
    next_tick_from: Literal["timing", "broker"] = "timing",
) -> list[ScheduleStatus]:
    """Every declared or recorded schedule with its recorded state, by name.

    ``next_tick_from="timing"`` computes each declared schedule's next tick from its timing
    and the clock (when it is due, whether or not a scheduler runs). ``"broker"`` takes the
    next tick the last enqueueing scheduler recorded, whatever process it ran in, so a next
    tick in the past shows that no scheduler has run the schedule since; a schedule that
    never ticked falls back to its timing."""
    recorded = {row[0]: row for row in _core.schedule_states(broker)}
    out = []
    for name in sorted(set(declared) | set(recorded)):
        spec = declared.get(name)
        row = recorded.get(name)
        last_tick = next_tick = None
        last_job_id = outcome = None
        if row is not None:
            _, last_ms, next_ms, last_job_id = row
            last_tick = _from_ms(last_ms)
            next_tick = _from_ms(next_ms) if next_ms else None
            job = broker.get(last_job_id)
            outcome = "pruned" if job is None else str(job["state"])
        if spec is not None and (next_tick_from == "timing" or row is None):
            next_tick = spec.next_tick()
        out.append(
            ScheduleStatus(
                name=name,
                spec=spec.spec if spec else "(not declared in this app)",
                tz=spec.tz if spec else "-",
                last_tick=last_tick,
                next_tick=next_tick,
                last_job_id=last_job_id,
                outcome=outcome,
            )
        )
    return out


class Scheduler:
    """A scheduler thread over an app's broker and schedules; a context manager that starts it
    on enter and stops it on exit. ``start`` is idempotent; ``stop`` blocks until the thread
    ended and is safe twice.

    Options: ``max_sleep`` (seconds between looks at the clock, also the retry delay after a
    broker error), ``history_retention`` (seconds of tick history kept), ``prune_every``
    (seconds between built-in prune jobs; 0 leaves them out), ``prune_queue``.
    """

    def __init__(
        self,
        broker: _core.Broker,
        schedules: list[ScheduleSpec],
        *,
        max_sleep: float = 1.0,
        history_retention: float | _dt.timedelta = 7 * 86400.0,
        prune_every: float | _dt.timedelta = 3600.0,
        prune_queue: str = "default",
    ) -> None:
        def seconds(value: float | _dt.timedelta) -> float:
            return value.total_seconds() if isinstance(value, _dt.timedelta) else float(value)

        self._core = _core.Scheduler(
            broker,
            [s.as_core() for s in schedules],
            max_sleep=max_sleep,
            history_retention=seconds(history_retention),
            prune_every=seconds(prune_every),
            prune_queue=prune_queue,
        )

    @property
    def names(self) -> list[str]:
        """The names of the schedules it runs, the built-in prune schedule included."""
        return list(self._core.names)

    @property
    def running(self) -> bool:
        return bool(self._core.running)

    @property
    def last_error(self) -> str:
        """The last broker error the thread met ('' when its last look succeeded)."""
        return str(self._core.last_error)

    def start(self) -> Scheduler:
        self._core.start()
        return self

    def stop(self) -> None:
        self._core.stop()

    def run_due(self, now: _dt.datetime | None = None) -> list[tuple[int, str]]:
        """Offer every tick due at ``now`` once, without the thread; returns (tick ms, job id)
        of the ticks this call enqueued."""
        now_ms = _core.now_ms() if now is None else _epoch_ms(now)
        return [(int(t), str(j)) for t, j in self._core.run_due(now_ms)]

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
