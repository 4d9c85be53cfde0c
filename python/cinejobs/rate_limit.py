"""RateLimiter: a rate limit that holds across every thread, process and machine sharing it.

The limit is kept by the C++ core (GCRA: bursts of up to ``burst`` at once, then one unit every
period/count) in a store: this process's memory (``"local"``), or the broker's own store
(SQLite file, Redis, PostgreSQL) so that every worker on the broker shares it. Waits release
the GIL and sleep exactly as long as the store says, never polling.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import os
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _core
from ._redact import redact

if TYPE_CHECKING:
    from .app import App

__all__ = ["RateLimiter"]

F = TypeVar("F", bound=Callable[..., Any])


def _store_url(broker: App | str | None) -> str:
    if broker is None:
        return os.environ.get("CINEJOBS_BROKER") or "local"
    if isinstance(broker, str):
        return broker
    return broker.broker_url


def _check_units(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__qualname__}")
    return n


def _check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be seconds as a number, got {type(value).__qualname__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class RateLimiter:
    """A limit of ``rate`` ("20/s", "40/10s", "100/m", "5/h") with bursts of up to ``burst``.

    ``broker``: where the limit is kept: an App or a broker URL (shared by every process using
    that broker), or ``"local"`` (this process only). By default ``$CINEJOBS_BROKER`` when set,
    else local. Limiters with the same ``name`` on one broker share one limit, so use one name
    per upstream and the same rate and burst wherever it is used.

    Use it directly (``acquire``, ``try_acquire``), as a context manager (``with limiter:``
    takes one unit, waiting as long as needed) or as a decorator (each call takes one unit;
    ``async def`` functions wait with ``asyncio.sleep``). ``key`` arguments split the limit:
    each key has its own bucket of this rate and burst.

    Raises ConfigError for a bad rate, burst, name or URL; BrokerUnavailable when a shared store
    cannot be reached.
    """

    def __init__(
        self, name: str, rate: str, burst: int = 1, broker: App | str | None = None
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__qualname__}")
        if not isinstance(rate, str):
            raise TypeError(f"rate must be a str like '20/s', got {type(rate).__qualname__}")
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int, got {type(burst).__qualname__}")
        self._core = _core.RateLimiter(_store_url(broker), name, rate, burst)

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def rate(self) -> str:
        """The rate in canonical form, e.g. "40/10s"."""
        return self._core.rate

    @property
    def burst(self) -> int:
        return self._core.burst

    @property
    def store(self) -> str:
        """Where the limit is kept: "local", "sqlite", "redis" or "postgres"."""
        return self._core.store_kind

    def try_acquire(self, n: int = 1, *, key: str = "") -> bool:
        """Take ``n`` units (1..burst) now and return True, or take nothing and return False."""
        return self._core.try_acquire(_check_units(n), key)[0]

    def acquire(self, n: int = 1, *, timeout: float | None = None, key: str = "") -> bool:
        """Wait until ``n`` units are taken and return True; return False as soon as it is
        clear they cannot be had within ``timeout`` seconds (None: wait as long as needed).
        The wait releases the GIL; Ctrl-C interrupts it."""
        if timeout is not None:
            timeout = _check_seconds(timeout, "timeout")
        return self._core.acquire(_check_units(n), timeout, key)

    async def acquire_async(self, n: int = 1, *, key: str = "") -> None:
        """Wait, without blocking the event loop, until ``n`` units are taken."""
        n = _check_units(n)
        while True:
            admitted, wait = await asyncio.to_thread(self._core.try_acquire, n, key)
            if admitted:
                return
            await asyncio.sleep(wait)

    def pause_for(self, seconds: float, *, key: str = "") -> None:
        """Admit nothing for ``seconds`` (an upstream's ``Retry-After``), in every process
        sharing the limit; afterwards one unit per interval, without a burst."""
        self._core.pause_for(_check_seconds(seconds, "seconds"), key)

    def __enter__(self) -> RateLimiter:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` so that each call first takes one unit."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def limited_async(*args: Any, **kwargs: Any) -> Any:
                await self.acquire_async()
                return await fn(*args, **kwargs)

            return cast(F, limited_async)

        @functools.wraps(fn)
        def limited(*args: Any, **kwargs: Any) -> Any:
            self.acquire()
            return fn(*args, **kwargs)

        return cast(F, limited)

    def __repr__(self) -> str:
        return (
            f"<RateLimiter {self.name!r} {self.rate} burst={self.burst} "
            f"store={redact(str(self.store))}>"
        )
