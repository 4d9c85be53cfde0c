"""How the stand-in misbehaves on purpose: latency, its own rate limit, injected faults, and the
credentials it demands, plus the counters that let a test see what happened.

Every knob can be given to the constructor of TmdbStandin, changed while it runs
(`TmdbStandin.configure(...)` or `POST /__standin__/config`), and read back. One lock guards all
of it, so concurrent requests see one consistent setting and the counters add up.
"""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# What an injected fault does to one request:
#   "500", "502", "503", "504": answer with that status (TMDB's JSON error body; 502 is the HTML
#                              page a gateway in front of TMDB sends)
#   "hang":      read the request and never answer, until `hang_s` has passed, then drop the
#                connection (a client with a shorter timeout sees a timeout)
#   "malformed": answer 200 with a body that is not valid JSON
#   "truncated": announce the whole body in Content-Length, send half of it, then close
FAULT_KINDS = ("500", "502", "503", "504", "hang", "malformed", "truncated")
# In a fault schedule, "ok" lets that request through untouched.
SCHEDULE_ENTRIES = (*FAULT_KINDS, "ok")


@dataclass(frozen=True)
class Settings:
    """The stand-in's knobs. Defaults: no latency, no rate limit, no faults, and TMDB's auth."""

    # v3 key accepted as ?api_key=..., and v4 read-access token accepted as
    # "Authorization: Bearer ...". None disables that method; with both None no credentials
    # are asked for.
    api_key: str | None = "standin-api-key"
    read_token: str | None = "standin-read-token"
    # Added before every answer: a fixed delay, or a (low, high) range drawn uniformly.
    latency_ms: float | tuple[float, float] = 0.0
    # At most `rate_limit` requests arrive in any rolling `rate_window_s` seconds (0:
    # unlimited); the next one gets 429 with Retry-After. Refused requests do not count against
    # the window. Rolling is the strictest reading of "N per window": a client that keeps to it
    # keeps to a fixed-window limit too.
    rate_limit: int = 0
    rate_window_s: float = 10.0
    # Each request that no schedule entry covers fails with this probability, with a kind drawn
    # from fault_kinds.
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("500", "502", "503")
    # How long a "hang" fault holds the connection before dropping it.
    hang_s: float = 30.0
    # Seed of the fault and latency draws, for reproducible runs (None: unpredictable).
    seed: int | None = None

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency_ms"] = (
            list(self.latency_ms) if isinstance(self.latency_ms, tuple) else self.latency_ms
        )
        out["fault_kinds"] = list(self.fault_kinds)
        return out


def _number(name: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, not {value!r}")
    return float(value)


def _credential(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string or null, not {value!r}")
    return value


def _latency(value: Any) -> float | tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"latency_ms range must be [low, high], not {value!r}")
        low = _number("latency_ms low", value[0])
        high = _number("latency_ms high", value[1])
        if high < low:
            raise ValueError(f"latency_ms range {value!r} has high below low")
        return (low, high)
    return _number("latency_ms", value)


def _kinds(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must be a list of strings, not {value!r}")
    for kind in value:
        if kind not in allowed:
            raise ValueError(f"{name}: unknown entry {kind!r}; known: {', '.join(allowed)}")
    return tuple(value)


def updated(settings: Settings, changes: Mapping[str, Any]) -> Settings:
    """`settings` with `changes` applied, each checked; ValueError names the first bad one."""
    known = Settings.__dataclass_fields__
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in known:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(known)}")
        if name in ("api_key", "read_token"):
            clean[name] = _credential(name, value)
        elif name == "latency_ms":
            clean[name] = _latency(value)
        elif name == "rate_limit":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"rate_limit must be an integer >= 0, not {value!r}")
            clean[name] = value
        elif name == "rate_window_s":
            clean[name] = _number(name, value, minimum=0.001)
        elif name == "fault_rate":
            rate = _number(name, value)
            if rate > 1:
                raise ValueError(f"fault_rate must be between 0 and 1, not {value!r}")
            clean[name] = rate
        elif name == "fault_kinds":
            kinds = _kinds(name, value, FAULT_KINDS)
            if not kinds:
                raise ValueError("fault_kinds must name at least one kind")
            clean[name] = kinds
        elif name == "hang_s":
            clean[name] = _number(name, value)
        elif name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"seed must be an integer or null, not {value!r}")
            clean[name] = value
    return replace(settings, **clean)


@dataclass
class Admission:
    """What the behaviour decided for one request before the API answers it."""

    retry_after_s: int | None  # set: refuse with 429
    rate_limit: int  # the limit this request was judged against (0: none)
    fault: str | None  # one of FAULT_KINDS, or None
    latency_s: float
    limit_headers: dict[str, str] = field(default_factory=dict)


class Behaviour:
    """Settings, the rate window, the fault schedule and the counters, behind one lock."""

    def __init__(self, settings: Settings) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._random = random.Random(settings.seed)
        self._window: collections.deque[float] = collections.deque()
        self._schedule: collections.deque[str] = collections.deque()
        self._reset_counters()

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    def configure(self, changes: Mapping[str, Any]) -> Settings:
        """Applies `changes` (see `updated`); `fault_schedule` (a list of SCHEDULE_ENTRIES)
        replaces the queue of faults given to the next requests, one each, in order."""
        changes = dict(changes)
        schedule = changes.pop("fault_schedule", None)
        if schedule is not None:
            schedule = _kinds("fault_schedule", schedule, SCHEDULE_ENTRIES)
        with self._lock:
            new = updated(self._settings, changes)
            if new.seed != self._settings.seed or "seed" in changes:
                self._random = random.Random(new.seed)
            if (new.rate_limit, new.rate_window_s) != (
                self._settings.rate_limit,
                self._settings.rate_window_s,
            ):
                self._window.clear()
            self._settings = new
            if schedule is not None:
                self._schedule = collections.deque(schedule)
            return new

    def reset(self) -> None:
        """Clears the counters, the rate window and any pending fault schedule."""
        with self._lock:
            self._window.clear()
            self._schedule.clear()
            self._reset_counters()

    def _reset_counters(self) -> None:
        self._requests = 0
        self._by_status: collections.Counter[str] = collections.Counter()
        self._by_path: collections.Counter[str] = collections.Counter()
        self._faults: collections.Counter[str] = collections.Counter()
        self._in_flight = 0
        self._max_in_flight = 0

    def admit(self) -> Admission:
        """Called once per TMDB API request as it arrives: counts it and decides whether it is
        rate limited, which fault (if any) it gets, and how long to delay the answer."""
        now = time.monotonic()
        with self._lock:
            s = self._settings
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            headers: dict[str, str] = {}
            retry_after: int | None = None
            if s.rate_limit:
                while self._window and self._window[0] <= now - s.rate_window_s:
                    self._window.popleft()
                if len(self._window) >= s.rate_limit:
                    free_at = self._window[0] + s.rate_window_s
                    retry_after = max(1, math.ceil(free_at - now))
                else:
                    self._window.append(now)
                reset_at = (self._window[0] if self._window else now) + s.rate_window_s
                headers = {
                    "X-RateLimit-Limit": str(s.rate_limit),
                    "X-RateLimit-Remaining": str(max(0, s.rate_limit - len(self._window))),
                    "X-RateLimit-Reset": str(math.ceil(time.time() + reset_at - now)),
                }
            fault: str | None = None
            if retry_after is None:
                if self._schedule:
                    entry = self._schedule.popleft()
                    fault = None if entry == "ok" else entry
                elif s.fault_rate and self._random.random() < s.fault_rate:
                    fault = self._random.choice(s.fault_kinds)
                if fault is not None:
                    self._faults[fault] += 1
            if isinstance(s.latency_ms, tuple):
                latency_ms = self._random.uniform(*s.latency_ms)
            else:
                latency_ms = s.latency_ms
            return Admission(retry_after, s.rate_limit, fault, latency_ms / 1000.0, headers)

    def finished(self, path_template: str, status: int | None) -> None:
        """Records one answered (or, with status None, dropped) TMDB API request."""
        with self._lock:
            self._in_flight -= 1
            self._by_path[path_template] += 1
            self._by_status["dropped" if status is None else str(status)] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "rate_limited": self._by_status.get("429", 0),
                "by_status": dict(sorted(self._by_status.items())),
                "by_path": dict(sorted(self._by_path.items())),
                "faults": dict(sorted(self._faults.items())),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "pending_fault_schedule": list(self._schedule),
            }
