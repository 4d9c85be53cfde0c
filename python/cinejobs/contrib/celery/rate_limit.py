"""GlobalRateLimitTask: a Celery task's rate limit that holds across every worker.

Celery's own ``rate_limit`` is kept by each worker for itself: four workers with
``rate_limit="10/s"`` start 40 a second. ``global_rate_limit`` is kept once, in a shared store (by
default the app's Redis broker), by cinejobs' C++ rate limiter (GCRA: at most count + burst
starts in any window of one period), so it holds however many workers and machines run the task.

The unit is taken when a delivery is about to run (after Celery's ETA, expiry and revoke checks,
so a message that is not run takes nothing). A delivery the limit refuses is *snoozed*: put back
for the limiter's wait plus a random spread, without running, without failing, without counting
as a retry (``request.retries`` is unchanged) and without holding its worker slot meanwhile:

- under Celery's worker it is published again (same task id, same retries, a countdown) and the
  running delivery ends with ``Ignore``, so no state, retry or failure is recorded for it;
- under ``cinejobs worker --celery`` the worker holds the message back in place, as it holds
  back a message with an ETA (nothing is published);
- run eagerly (``apply()``, ``task_always_eager``), it waits in the caller, as there is no queue.

Calling the task as a plain function (``enrich(42)``) is not limited, as with Celery's own limit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from ... import _core
from ...context import _current
from ...errors import BrokerUnavailable, ConfigError
from ._options import callable_option

__all__ = ["GlobalRateLimitTask", "Snoozed"]

log = logging.getLogger("cinejobs.celery")

# How long a delivery is held back when its limit's store cannot be reached: running it could
# break the limit, failing it would spend an attempt on nothing (cinejobs' own worker does the
# same).
_STORE_DOWN_DELAY = 1.0
# Visibility timeout kombu's Redis transport assumes when the app sets none.
_DEFAULT_VISIBILITY_TIMEOUT = 3600.0


class Snoozed(Exception):
    """A delivery refused by its task's global rate limit, under ``cinejobs worker --celery``:
    that worker holds the message back for ``delay`` seconds, in place."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"held back by its global rate limit for {delay:.3f} s")
        self.delay = delay


class GlobalRateLimitTask(Task):  # type: ignore[misc]  # Celery has no type information
    """A Celery task base whose ``global_rate_limit`` holds across every worker.

    ``@app.task(base=GlobalRateLimitTask, global_rate_limit="40/10s", rate_limit_burst=4)``;
    rates are ``count/period`` ("20/s", "40/10s", "100/m", "5/h", "3/500ms"). Options:

    - ``rate_limit_burst``: how many may start at once after a quiet spell (default 1);
    - ``rate_limit_key``: a callable given the task's arguments that returns a key (a str),
      giving each key its own limit of this rate, or None for the task's shared one; an
      exception it raises fails the task, as any error in the task would;
    - ``rate_limit_store``: where the limit is kept: a ``redis://``, ``postgresql://`` or
      ``sqlite:///`` URL, or ``"local"`` (this process only); default: the app's broker URL.

    Tasks keep their limits under ``celery:<task name>`` in the store. Bad options raise
    ConfigError (or TypeError) when the task is created, before anything is sent.
    """

    abstract = True
    global_rate_limit: str | None = None
    rate_limit_burst: int = 1
    rate_limit_key: Callable[..., str | None] | None = None
    rate_limit_store: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_options(cls)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.global_rate_limit is not None and not self.request.called_directly:
            self._take_global_rate_limit(args, kwargs)
        return super().__call__(*args, **kwargs)

    def _take_global_rate_limit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Return when this delivery may run; otherwise snooze it (raises)."""
        key = self._global_rate_limit_key(args, kwargs)
        limiter: _core.RateLimiter | None = None
        try:
            limiter = self._global_limiter()
            if self.request.is_eager:
                # Run in the caller: there is no queue to wait in, so wait here (GIL released).
                limiter.acquire(1, None, key)
                return
            admitted, wait = limiter.try_acquire(1, key)
        except BrokerUnavailable as exc:
            if self.request.is_eager:
                raise
            log.warning(
                "task %s[%s]: its global rate limit cannot be checked, holding it back for "
                "%.0f s: %s",
                self.name,
                self.request.id,
                _STORE_DOWN_DELAY,
                exc,
            )
            admitted, wait = False, -1.0
        if admitted:
            return
        delay = _STORE_DOWN_DELAY if limiter is None or wait < 0 else limiter.snooze_delay(wait)
        if _current.get() is not None:
            raise Snoozed(delay)  # cinejobs' worker holds the message it has
        self._publish_snoozed(delay)

    def _publish_snoozed(self, delay: float) -> None:
        """Publish this delivery again to run in ``delay`` seconds and end the current one
        (Celery's worker acks it and records nothing)."""
        request = self.request
        # Same id, args, links, chain, expiry and `retries`: a snooze is not a retry. A message
        # with an ETA that waits in a Redis worker longer than the visibility timeout is given
        # to a second worker too, so long waits are cut short and snoozed again if need be.
        countdown = min(delay, _longest_countdown(self.app))
        self.signature_from_request(request, countdown=countdown).apply_async()
        log.debug(
            "task %s[%s] held back by its global rate limit for %.2f s",
            self.name,
            request.id,
            countdown,
        )
        raise Ignore()

    def _global_rate_limit_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        make_key = callable_option(self, "rate_limit_key")
        if make_key is None:
            return ""
        key = make_key(*args, **kwargs)
        if key is None:
            return ""
        if not isinstance(key, str):
            raise TypeError(
                f"rate_limit_key of task {self.name!r} must return a str or None, got "
                f"{type(key).__qualname__}"
            )
        return key

    def _global_limiter(self) -> _core.RateLimiter:
        # One per process: a limiter holds connections to its store, which a forked pool
        # process must not share with its parent. The parent's is dropped first so that the
        # store (shared per URL within a process) is opened afresh.
        cached: tuple[int, _core.RateLimiter] | None = self.__dict__.get("_cinejobs_limiter")
        pid = os.getpid()
        if cached is not None and cached[0] == pid:
            return cached[1]
        self.__dict__.pop("_cinejobs_limiter", None)
        assert self.global_rate_limit is not None
        store = self.rate_limit_store or self.app.conf.broker_url
        try:
            limiter = _core.RateLimiter(
                store, f"celery:{self.name}", self.global_rate_limit, self.rate_limit_burst
            )
        except ConfigError as exc:
            raise ConfigError(
                f"task {self.name!r}: global_rate_limit cannot be kept at {store!r} ({exc}); "
                "give rate_limit_store='redis://…', 'postgresql://…', 'sqlite:///…' or 'local'"
            ) from None
        self.__dict__["_cinejobs_limiter"] = (pid, limiter)
        return limiter


def _check_options(cls: type[GlobalRateLimitTask]) -> None:
    where = f"task {getattr(cls, 'name', None) or cls.__name__!r}"
    rate = cls.global_rate_limit
    if rate is not None:
        if not isinstance(rate, str):
            raise TypeError(
                f"{where}: global_rate_limit must be a rate like '20/s' or '40/10s', got "
                f"{type(rate).__qualname__}"
            )
        try:
            _core.parse_rate(rate)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    burst = cls.rate_limit_burst
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise TypeError(f"{where}: rate_limit_burst must be an int, got {type(burst).__qualname__}")
    if burst < 1:
        raise ConfigError(f"{where}: rate_limit_burst must be at least 1, got {burst}")
    store = cls.rate_limit_store
    if store is not None and not isinstance(store, str):
        raise TypeError(f"{where}: rate_limit_store must be a URL or 'local', got {store!r}")
    if callable_option(cls, "rate_limit_key") is not None and rate is None:
        raise ConfigError(f"{where}: rate_limit_key needs a global_rate_limit to split")


def _longest_countdown(app: Any) -> float:
    """The longest a snoozed message may wait in a worker: half the broker's visibility
    timeout (at least a second)."""
    options = app.conf.broker_transport_options or {}
    visibility = float(options.get("visibility_timeout", _DEFAULT_VISIBILITY_TIMEOUT))
    return max(1.0, visibility / 2)
