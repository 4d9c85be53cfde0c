"""The example Celery app (examples/celery_app) under both workers: the same tests pass against
a real `celery worker` and a real `cinejobs worker --celery`, on a real redis-server. Producers
call .delay() / .apply_async() exactly as they would with Celery alone."""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery_workers import EXAMPLE_DIR, WORKER_KINDS, CeleryAppWorker
from helpers import wait_until

from cinejobs.errors import UniqueConflict

pytestmark = pytest.mark.slow

QUEUE = "celery"


class Example:
    """The example app as the test process (the producer) imports it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"example-{uuid.uuid4().hex[:8]}:"
        # What the example reads at import, here and in the workers; never left in os.environ
        # (Celery lets CELERY_BROKER_URL override any app's own broker).
        self.env = {
            "CELERY_BROKER_URL": url,
            "CELERY_RESULT_BACKEND": url,
            "EXAMPLE_KEY_PREFIX": self.prefix,
            # Batches are written when full or when the worker stops, never by age.
            "EXAMPLE_BATCH_MAX_AGE": "3600",
        }
        if str(EXAMPLE_DIR) not in sys.path:
            sys.path.insert(0, str(EXAMPLE_DIR))
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            import proj.celery
            import proj.tasks
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        import redis

        self.app: Any = proj.celery.app
        self.tasks: ModuleType = proj.tasks
        self.redis = redis.Redis.from_url(url)

    def runs(self, name: str) -> int:
        return int(self.redis.hget(self.prefix + "runs", name) or 0)

    def values(self, name: str) -> list[str]:
        return [v.decode() for v in self.redis.lrange(self.prefix + "values:" + name, 0, -1)]


@pytest.fixture(scope="session")
def example(redis_server: Any) -> Example:
    # Celery's keys have no prefix: the example gets a database of its own.
    return Example(redis_server.url(db=3))


@pytest.fixture(scope="module", params=WORKER_KINDS)
def worker(
    request: pytest.FixtureRequest, example: Example, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryAppWorker]:
    """One worker of each kind for the whole module: the suite runs once per kind."""
    log = tmp_path_factory.mktemp(request.param) / "worker.log"
    proc = CeleryAppWorker(
        request.param, "proj.celery:app", [QUEUE], log, concurrency=4, env=example.env
    )
    try:
        # Ready when it runs a task.
        assert example.tasks.add.delay(0, 0).get(timeout=60) == 0, proc.output()
        yield proc
    finally:
        proc.stop()
        left = [json.loads(v)[0]["headers"]["task"] for v in example.redis.hvals("unacked")]
        assert not left, f"the worker left messages unacknowledged: {left}"


def key() -> str:
    return uuid.uuid4().hex[:12]


def test_a_plain_task_returns_its_result_through_asyncresult(
    worker: CeleryAppWorker, example: Example
) -> None:
    from celery.result import AsyncResult

    result = example.tasks.add.delay(2, 3)
    assert result.get(timeout=30) == 5
    fresh = AsyncResult(result.id, app=example.app)
    assert (fresh.state, fresh.info, fresh.result) == ("SUCCESS", 5, 5)
    assert fresh.date_done is not None


def test_a_bound_task_retries_with_its_countdown_until_it_succeeds(
    worker: CeleryAppWorker, example: Example
) -> None:
    k = key()
    sent = _dt.datetime.now(_dt.UTC)
    result = example.tasks.flaky.delay(k, 2)
    assert result.get(timeout=30) == {"retries": 2, "id": result.id}
    assert example.runs("flaky:" + k) == 3
    assert example.values("flaky:" + k) == ["0", "1", "2"]
    # Two retries of countdown=1 each: the success cannot come before two seconds have passed.
    assert result.date_done - sent >= _dt.timedelta(seconds=2)


def test_autoretry_for_stops_after_max_retries_with_the_last_error(
    worker: CeleryAppWorker, example: Example
) -> None:
    k = key()
    result = example.tasks.always_down.delay(k)
    with pytest.raises(ConnectionError, match="upstream is down"):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert example.runs("always_down:" + k) == 3  # the first run and max_retries=2 retries


def test_a_failure_is_stored_with_its_type_and_traceback(
    worker: CeleryAppWorker, example: Example
) -> None:
    result = example.tasks.boom.delay("it broke")
    with pytest.raises(ValueError, match="it broke"):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert "ValueError: it broke" in result.traceback


def test_ignore_result_runs_the_task_but_stores_no_result(
    worker: CeleryAppWorker, example: Example
) -> None:
    k = key()
    result = example.tasks.record.delay("v", k)
    wait_until(lambda: example.runs("record:" + k) == 1, 30, what="record to run")
    # The run is over once the next task on the queue has finished, as the queue is FIFO.
    example.tasks.add.delay(0, 0).get(timeout=30)
    assert not example.redis.exists(f"celery-task-meta-{result.id}")
    assert result.state == "PENDING"


def test_countdown_holds_the_task_until_its_eta(worker: CeleryAppWorker, example: Example) -> None:
    result = example.tasks.add.apply_async((20, 22), countdown=1.5)
    eta = _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=1.5)
    assert result.get(timeout=30) == 42
    assert result.date_done >= eta - _dt.timedelta(milliseconds=50)


def test_an_expired_task_is_revoked_and_never_runs(
    worker: CeleryAppWorker, example: Example
) -> None:
    from celery.exceptions import TaskRevokedError

    k = key()
    result = example.tasks.flaky.apply_async((k, 0), expires=-1)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    assert example.runs("flaky:" + k) == 0


def test_revoke_of_a_queued_task_holds(worker: CeleryAppWorker, example: Example) -> None:
    from celery.exceptions import TaskRevokedError

    k = key()
    result = example.tasks.flaky.apply_async((k, 0), countdown=2)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    assert example.runs("flaky:" + k) == 0


def test_a_chain_passes_each_result_to_the_next_task(
    worker: CeleryAppWorker, example: Example
) -> None:
    from celery import chain

    t = example.tasks
    result = chain(t.add.s(1, 2), t.add.s(3), t.add.s(4)).apply_async()
    assert result.get(timeout=30) == 10
    assert result.parent.get(timeout=30) == 6


def test_link_and_link_error_callbacks_run(worker: CeleryAppWorker, example: Example) -> None:
    t = example.tasks
    k = key()
    assert t.add.apply_async((2, 2), link=t.record.s(k)).get(timeout=30) == 4
    wait_until(lambda: example.values("record:" + k) == ["4"], 30, what="the link callback")
    failed = t.boom.apply_async(("x",), link_error=t.on_error.s(k))
    with pytest.raises(ValueError):
        failed.get(timeout=30)
    wait_until(lambda: example.values("on_error:" + k) == [repr(failed.id)], 30, what="the errback")


def test_unique_lock_refuses_a_second_run_and_progress_is_readable(
    worker: CeleryAppWorker, example: Example
) -> None:
    from cinejobs.contrib.celery import progress_of

    t = example.tasks
    movie = uuid.uuid4().int % 10**9
    gate = f"{example.prefix}gate:{movie}"
    first = t.enrich.delay(movie, 2)
    wait_until(lambda: progress_of(first), 30, what="the first progress report")
    assert progress_of(first) == {"step": "step 1", "fraction": 0.5, "message": f"movie {movie}"}
    assert first.state == "PROGRESS"
    with pytest.raises(UniqueConflict) as conflict:
        t.enrich.delay(movie, 2)
    assert conflict.value.existing_id == first.id
    assert conflict.value.unique_key == f"movie:{movie}"
    example.redis.rpush(gate, 1)
    wait_until(lambda: (progress_of(first) or {}).get("fraction") == 1.0, 30, what="step 2")
    example.redis.rpush(gate, 1)
    assert first.get(timeout=30) == {"movie": movie, "steps": 2}
    # Finished: the key is free again (Celery releases it in after_return, just after the
    # result is stored).
    example.redis.rpush(gate, 1)

    def enqueue_again() -> Any:
        try:
            return t.enrich.delay(movie, 1)
        except UniqueConflict:
            return None

    again = wait_until(enqueue_again, 30, what="the unique key to be released")
    assert again.get(timeout=30) == {"movie": movie, "steps": 1}


def test_a_pickle_message_is_left_in_the_queue_for_a_celery_worker(
    worker: CeleryAppWorker, example: Example
) -> None:
    if worker.kind != "cinejobs":
        pytest.skip("Celery workers decide about pickle themselves (accept_content)")
    k = key()
    example.tasks.record.apply_async(("v", k), serializer="pickle")
    wait_until(lambda: "left 1 Celery message" in worker.output(), 30, what="the refusal")
    waiting = [m for m in example.redis.lrange(QUEUE, 0, -1) if b"application/x-python" in m]
    assert len(waiting) == 1
    assert example.runs("record:" + k) == 0
    example.redis.lrem(QUEUE, 0, waiting[0])


def test_mixed_fleet_loses_and_duplicates_nothing(
    example: Example, tmp_path: Path, worker: CeleryAppWorker
) -> None:
    if worker.kind != "cinejobs":
        pytest.skip("runs once, with one worker of each kind")
    workers = [
        CeleryAppWorker(
            kind, "proj.celery:app", ["counting"], tmp_path / f"{kind}.log", env=example.env
        )
        for kind in WORKER_KINDS
    ]
    try:
        wait_until(lambda: "ready." in workers[0].output(), 60, what="the Celery worker")
        wait_until(lambda: " started: " in workers[1].output(), 60, what="the cinejobs worker")
        keys = [key() for _ in range(400)]
        results = [example.tasks.count.delay(k) for k in keys]
        assert [r.get(timeout=60) for r in results] == [1] * len(keys)
        executions = [example.redis.hget(f"{example.prefix}count:{k}", "executions") for k in keys]
        assert executions == [b"1"] * len(keys)
        by_worker = {
            name.decode(): int(n)
            for name, n in example.redis.hgetall(example.prefix + "count-by-worker").items()
        }
        assert sum(by_worker.values()) == len(keys)
        # Both kinds took part.
        assert by_worker.get("celery", 0) > 0 and by_worker.get("cinejobs", 0) > 0, by_worker
        assert all(w.alive() for w in workers), [w.output() for w in workers]
    finally:
        for w in workers:
            w.stop()


def test_a_killed_cinejobs_worker_s_task_runs_again_after_its_lease(
    example: Example, tmp_path: Path, worker: CeleryAppWorker
) -> None:
    if worker.kind != "cinejobs":
        pytest.skip("kills a cinejobs worker; runs once")
    t = example.tasks
    movie = uuid.uuid4().int % 10**9
    gate = f"{example.prefix}gate:{movie}"
    lease = ("--lease", "2")
    first = CeleryAppWorker(
        "cinejobs", "proj.celery:app", ["crash"], tmp_path / "1.log", extra=lease, env=example.env
    )
    second = None
    try:
        result = t.enrich.apply_async((movie, 1), queue="crash")
        wait_until(lambda: result.state == "PROGRESS", 30, what="the task to start")
        first.kill()
        assert example.redis.hlen("unacked") >= 1  # held by the dead worker
        second = CeleryAppWorker(
            "cinejobs",
            "proj.celery:app",
            ["crash"],
            tmp_path / "2.log",
            extra=lease,
            env=example.env,
        )
        example.redis.rpush(gate, 1)
        assert result.get(timeout=60) == {"movie": movie, "steps": 1}
        assert example.values("enrich").count(repr(movie)) == 1  # finished once
    finally:
        first.stop()
        if second is not None:
            second.stop()


# ---- Step 1: the global rate limit and the batchers, on workers of their own ----

RATE, BURST = 5, 2  # call_upstream's global_rate_limit="5/s", rate_limit_burst=2
CALLS = 30  # sent at once: six times what the limit admits in a second


def start_workers(
    kinds: list[str], queue: str, example: Example, tmp_path: Path
) -> list[CeleryAppWorker]:
    """Start one worker of each of ``kinds`` (two processes each) on ``queue``; return once all
    are ready."""
    workers = [
        CeleryAppWorker(
            kind, "proj.celery:app", [queue], tmp_path / f"{queue}-{i}-{kind}.log", env=example.env
        )
        for i, kind in enumerate(kinds)
    ]
    for w in workers:
        ready = "ready." if w.kind == "celery" else " started: "
        wait_until(lambda w=w, ready=ready: ready in w.output(), 60, what=f"the {w.kind} worker")
    return workers


def busiest_window(starts: list[float], period: float) -> int:
    """The most start times in any half-open window [s, s + period) over the sorted starts."""
    most, j = 0, 0
    for i, start in enumerate(starts):
        while j < len(starts) and starts[j] < start + period:
            j += 1
        most = max(most, j - i)
    return most


def run_limited_calls(
    example: Example, once_started: Callable[[], object] | None = None
) -> list[dict[str, Any]]:
    """Send CALLS limited calls at once; check each ran once, as its first attempt, and return
    their starts in order. ``once_started`` runs when the first calls have started."""
    batch = key()
    results = [example.tasks.call_upstream.delay(batch, n) for n in range(CALLS)]
    if once_started is not None:
        wait_until(
            lambda: example.redis.llen(f"{example.prefix}upstream:{batch}") >= 3,
            60,
            what="the first limited calls to start",
        )
        once_started()
    assert [r.get(timeout=120) for r in results] == [
        {"n": n, "retries": 0} for n in range(CALLS)
    ], "a snooze must not count as a retry"
    assert all(r.state == "SUCCESS" for r in results)
    runs = example.redis.hgetall(f"{example.prefix}upstream-runs:{batch}")
    assert sorted((int(n), int(c)) for n, c in runs.items()) == [(n, 1) for n in range(CALLS)]
    raw = example.redis.lrange(f"{example.prefix}upstream:{batch}", 0, -1)
    return sorted((json.loads(s) for s in raw), key=lambda s: s["at"])


def check_the_limit(starts: list[dict[str, Any]], fleet: str) -> None:
    at = [s["at"] for s in starts]
    busiest = busiest_window(at, 1.0)
    per_second = [
        sum(1 for t in at if at[0] + i <= t < at[0] + i + 1) for i in range(int(at[-1] - at[0]) + 1)
    ]
    print(
        f"\n{fleet}: {len(at)} calls in {at[-1] - at[0]:.2f} s, busiest 1 s window {busiest} "
        f"(limit {RATE + BURST}), starts per second from the first: {per_second}"
    )
    # GCRA admits at most count + burst in any window of one period (count + burst - 1 in a
    # half-open one): one unit of slack for the moment between admission and the task's clock.
    assert busiest <= RATE + BURST, f"{busiest} starts within one second"


def test_a_global_rate_limit_holds_across_two_workers_without_spending_retries(
    worker: CeleryAppWorker, example: Example, tmp_path: Path
) -> None:
    workers = start_workers([worker.kind, worker.kind], "limited", example, tmp_path)
    try:
        starts = run_limited_calls(example)
        assert all(w.alive() for w in workers), [w.output() for w in workers]
    finally:
        for w in workers:
            w.stop()
    check_the_limit(starts, f"two {worker.kind} workers")
    assert len({s["pid"] for s in starts}) >= 2, "the calls ran in one process only"


def test_a_global_rate_limit_holds_across_a_mixed_fleet(
    worker: CeleryAppWorker, example: Example, tmp_path: Path
) -> None:
    if worker.kind != "cinejobs":
        pytest.skip("runs once, with one worker of each kind")
    # A Celery worker takes every message it is offered with an ETA (a snoozed call is
    # republished with one) and holds it in memory, so a Celery worker started first can take
    # all 30 calls. The cinejobs worker starts first and holds at most its free slots; the
    # Celery worker joins once calls are running, and takes from the rest.
    workers = start_workers(["cinejobs"], "limited", example, tmp_path)
    try:
        starts = run_limited_calls(
            example,
            once_started=lambda: workers.extend(
                start_workers(["celery"], "limited", example, tmp_path)
            ),
        )
    finally:
        for w in workers:
            w.stop()
    check_the_limit(starts, "a Celery and a cinejobs worker")
    kinds = {"cinejobs" if s["host"].startswith("cinejobs@") else "celery" for s in starts}
    assert kinds == {"celery", "cinejobs"}, "both kinds must have run calls"


def test_batched_writes_arrive_once_each_even_from_a_half_full_buffer_at_a_graceful_stop(
    worker: CeleryAppWorker, example: Example, tmp_path: Path
) -> None:
    run = key()
    count = 70  # however the two processes share them, some are left in a buffer (not 0 mod 50)

    def written() -> list[int]:
        items = (json.loads(m) for m in example.redis.lrange(example.prefix + "movies", 0, -1))
        return [item["id"] for item in items if item["run"] == run]

    [batching] = start_workers([worker.kind], "batching", example, tmp_path)
    try:
        results = [example.tasks.store_movie.delay({"run": run, "id": i}) for i in range(count)]
        for r in results:
            r.get(timeout=60)
        before_stop = written()
        # Only full batches of 50 go out while the worker runs (max_age is an hour).
        assert len(before_stop) % 50 == 0 and len(before_stop) < count, len(before_stop)
    finally:
        code = batching.stop()
    assert code == 0, batching.output()
    after = written()
    assert sorted(after) == list(range(count)), f"missing {set(range(count)) - set(after)}"
    assert after[: len(before_stop)] == before_stop
    print(f"\n{worker.kind}: {len(before_stop)} written while running, {count} after the stop")
