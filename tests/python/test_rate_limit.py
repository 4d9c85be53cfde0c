"""Rate limits: cinejobs.RateLimiter used directly, as a context manager and as a decorator, and
task limits that hold across every worker process on a broker (SQLite, Redis, PostgreSQL),
holding jobs back without failing them or keeping a worker slot."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

import pytest
from apps import rate_limited
from helpers import StartCliWorker, wait_until

import cinejobs
from cinejobs import ConfigError, RateLimiter

# ---- RateLimiter on its own ----


def test_a_limiter_admits_its_burst_then_refuses() -> None:
    limiter = RateLimiter("burst", "1/m", burst=3, broker="local")
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert limiter.store == "local"
    assert limiter.rate == "1/m"
    assert limiter.burst == 3


def test_keys_split_a_limit() -> None:
    limiter = RateLimiter("keys", "1/m", broker="local")
    assert limiter.try_acquire(key="user-1")
    assert limiter.try_acquire(key="user-2")
    assert not limiter.try_acquire(key="user-1")


def test_acquire_returns_false_at_once_when_the_timeout_cannot_be_met() -> None:
    limiter = RateLimiter("timeout", "1/h", broker="local")
    assert limiter.acquire(timeout=1)
    start = time.monotonic()
    assert not limiter.acquire(timeout=5)
    assert time.monotonic() - start < 4, "it waited for a unit an hour away"


def test_acquire_waits_for_the_next_unit() -> None:
    limiter = RateLimiter("wait", "5/s", broker="local")
    assert limiter.try_acquire()
    start = time.monotonic()
    assert limiter.acquire(timeout=10)
    assert time.monotonic() - start >= 0.15, "the next of 5/s is 0.2 s away"


def test_context_manager_and_decorator_take_one_unit_per_use() -> None:
    limiter = RateLimiter("uses", "1/m", burst=3, broker="local")
    calls: list[int] = []

    @limiter
    def call(n: int) -> int:
        calls.append(n)
        return n * 2

    with limiter:
        pass
    assert call(21) == 42
    assert call.__name__ == "call"
    assert limiter.try_acquire()
    assert not limiter.try_acquire(), "the with block and the call each took one unit"
    assert calls == [21]


def test_decorated_coroutines_wait_without_blocking_the_loop() -> None:
    limiter = RateLimiter("async", "10/s", burst=1, broker="local")

    @limiter
    async def fetch(n: int) -> int:
        return n

    async def main() -> list[int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        results = [await fetch(n) for n in range(3)]
        task.cancel()
        assert ticks >= 5, "the loop ran while the coroutine waited for its units"
        return results

    assert asyncio.run(main()) == [0, 1, 2]


def test_pause_for_holds_back_until_it_ends() -> None:
    limiter = RateLimiter("paused", "100/s", burst=5, broker="local")
    limiter.pause_for(0.5)
    assert not limiter.try_acquire()
    start = time.monotonic()
    assert limiter.acquire(timeout=10)
    assert time.monotonic() - start >= 0.4


@pytest.mark.parametrize("rate", ["", "20", "0/s", "1.5/s", "20/x", "20/sec", "/s"])
def test_a_bad_rate_is_refused_naming_it(rate: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{rate}'")):
        RateLimiter("bad", rate, broker="local")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="burst"):
        RateLimiter("x", "1/s", burst=0, broker="local")
    with pytest.raises(ConfigError, match="name"):
        RateLimiter("", "1/s", broker="local")
    with pytest.raises(ConfigError, match="memcached"):
        RateLimiter("x", "1/s", broker="memcached://host")
    limiter = RateLimiter("x", "1/s", burst=2, broker="local")
    with pytest.raises(ConfigError, match=r"1\.\.2"):
        limiter.try_acquire(3)
    with pytest.raises(TypeError):
        limiter.try_acquire("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire(timeout=-1)


def test_the_default_store_is_the_environments_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    assert RateLimiter("d", "1/s").store == "local"
    monkeypatch.setenv("CINEJOBS_BROKER", f"sqlite:///{tmp_path}/env.db")
    assert RateLimiter("d", "1/s").store == "sqlite"


def test_limiters_on_one_broker_share_their_limit(broker_url: str) -> None:
    app = cinejobs.App(broker_url)
    first = RateLimiter("shared", "1/m", burst=2, broker=app)
    second = RateLimiter("shared", "1/m", burst=2, broker=broker_url)
    assert first.store == app.connect().broker.kind
    assert first.try_acquire()
    assert second.try_acquire()
    assert not first.try_acquire()
    assert not second.try_acquire()


# ---- Task limits ----


def test_task_rate_limit_settings_are_checked_at_registration() -> None:
    app = cinejobs.App("sqlite:///never-opened.db")
    with pytest.raises(ConfigError, match="'40 per minute'"):
        app.task(rate_limit="40 per minute")(lambda: None)
    with pytest.raises(ConfigError, match="rate_limit_burst"):
        app.task(name="b", rate_limit="1/s", rate_limit_burst=0)(lambda: None)
    with pytest.raises(ConfigError, match="needs a rate_limit"):
        app.task(name="k", rate_limit_key=lambda: "x")(lambda: None)
    task = app.task(name="ok", rate_limit="40/10s", rate_limit_burst=4)(lambda: None)
    assert (task.rate_limit, task.rate_limit_burst) == ("40/10s", 4)


def _states(app: cinejobs.App, handles: Sequence[cinejobs.JobHandle]) -> list[str]:
    return sorted(h.status() for h in handles)


def test_jobs_held_back_by_their_limit_wait_scheduled_without_spending_attempts(
    app: cinejobs.App,
) -> None:
    @app.task(name="limited", rate_limit="1/m", rate_limit_burst=2, max_attempts=1)
    def limited() -> str:
        return "ran"

    handles = [limited.delay() for _ in range(5)]
    with app.worker(concurrency=4, poll_interval=0.01) as worker:
        wait_until(lambda: worker.stats()["snoozed"] >= 3, 15, what="three jobs snoozed")
        wait_until(lambda: _states(app, handles).count("succeeded") == 2, 15, what="two jobs run")
        stats = worker.stats()
    assert stats["failed"] == 0 and stats["retried"] == 0
    held = [h.info() for h in handles if h.status() == "scheduled"]
    assert len(held) == 3
    assert all(job["attempt"] == 0 for job in held), "a snooze is not an attempt"
    assert all(job["error"] is None for job in held)
    assert min(job["run_at"] for job in held) > cinejobs._core.now_ms() + 10_000, (
        "held back until the limit has a unit again (a minute, less what passed)"
    )


def test_rate_limit_key_gives_each_key_its_own_limit(app: cinejobs.App) -> None:
    @app.task(
        name="per_user",
        rate_limit="1/m",
        rate_limit_key=lambda user, **_: None if user == "anyone" else f"user:{user}",
    )
    def per_user(user: str, note: str = "") -> str:
        return user

    a1, a2, b = per_user.delay("a"), per_user.delay("a", note="again"), per_user.delay("b")
    with app.worker(concurrency=2, poll_interval=0.01) as worker:
        wait_until(lambda: worker.stats()["succeeded"] >= 2, 15, what="a and b to run")
        wait_until(lambda: worker.stats()["snoozed"] >= 1, 15, what="the second a held back")
    assert sorted([a1.status(), a2.status()]) == ["scheduled", "succeeded"]
    assert b.status() == "succeeded"


def test_a_failing_rate_limit_key_fails_the_attempt_with_its_error(app: cinejobs.App) -> None:
    def broken_key(n: int) -> str:
        raise LookupError(f"no key for {n}")

    @app.task(name="bad_key", rate_limit="10/s", rate_limit_key=broken_key, max_attempts=1)
    def bad_key(n: int) -> int:
        return n

    handle = bad_key.delay(7)
    with app.worker(concurrency=1, poll_interval=0.01):
        wait_until(lambda: handle.status() == "failed", 15, what="the job to fail")
    error = handle.info()["error"]
    assert error["type"] == "LookupError" and "no key for 7" in error["message"]


# ---- Across processes: the acceptance test ----

DEMAND_PER_TICK = 4  # jobs enqueued every 0.1 s: 40/s, twice the limit
RUN_SECONDS = 30.0


def _max_in_any_window(starts: Sequence[float], period: float) -> int:
    """The most start times in any half-open window [s, s + period) over the sorted starts."""
    most, j = 0, 0
    for i, start in enumerate(starts):
        j = max(j, i)
        while j < len(starts) and starts[j] < start + period:
            j += 1
        most = max(most, j - i)
    return most


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_worker_processes_share_one_limit_and_use_all_of_it(
    broker_url: str, start_cli_worker: StartCliWorker
) -> None:
    """2 worker processes x 8 threads share 20/s (burst 5) for 30 s of demand at 40/s: no
    window of one second admits more than rate + burst starts, and at least 95% of the
    allowance (rate * 30 + burst) is used."""
    app = cinejobs.App(broker_url).connect()
    workers = [
        start_cli_worker(broker_url, "apps.rate_limited:app", concurrency=8) for _ in range(2)
    ]
    for worker in workers:
        worker.wait_started()

    t0 = time.time()
    deadline = time.monotonic() + RUN_SECONDS
    tick = time.monotonic()
    enqueued = 0
    while time.monotonic() < deadline:
        app.enqueue_many([("rl.hit",)] * DEMAND_PER_TICK)
        enqueued += DEMAND_PER_TICK
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))
    t_end = time.time()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        assert worker.wait(60) == 0, worker.output()

    done = app.jobs(task="rl.hit", state="succeeded", limit=100_000)
    starts = sorted(job["result"] for job in done)
    assert not app.jobs(task="rl.hit", state="failed", limit=10), "a held-back job failed"
    assert all(job["attempt"] == 1 for job in done), "snoozes must not count as attempts"

    rate, burst = rate_limited.RATE, rate_limited.BURST
    busiest = _max_in_any_window(starts, 1.0)
    assert busiest <= rate + burst, f"{busiest} starts within one second"
    in_run = [s for s in starts if t0 <= s <= t_end]
    allowance = rate * (t_end - t0) + burst
    assert enqueued > allowance * 1.5, "demand must exceed the limit throughout"
    assert len(in_run) >= 0.95 * allowance, (
        f"{len(in_run)} starts in {t_end - t0:.1f} s, allowance {allowance:.0f}"
    )
    print(
        f"\n{app.broker.kind}: {len(in_run)} starts in {t_end - t0:.2f} s "
        f"({len(in_run) / allowance:.1%} of the allowance {allowance:.0f}); busiest second "
        f"{busiest} (limit {rate + burst}); {enqueued} enqueued"
    )
