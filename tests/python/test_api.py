"""The Python API against every broker kind, with an embedded worker in this process:
enqueue, handles, results, retries, priorities, schedules, unique keys, cancel, timeouts,
progress and async tasks."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import pytest
from helpers import wait_until

import cinejobs
from cinejobs import (
    App,
    JobCancelled,
    JobFailed,
    JobHandle,
    JobNotFound,
    UniqueConflict,
    current_job,
)

# Short leases and polls keep the suite fast; nothing here depends on their exact values.
FAST: dict[str, Any] = {"lease": 1.5, "poll_interval": 0.01}


def test_delay_status_wait_result_round_trip(app: App) -> None:
    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.delay(2, 3)
    assert isinstance(handle, JobHandle)
    assert handle.created
    assert handle.status() == "queued"
    info = handle.info()
    assert info["id"] == handle.id
    assert info["task"] == "t.add"
    assert info["queue"] == "default"
    assert info["args"] == [2, 3]
    assert info["kwargs"] == {}
    assert info["attempt"] == 0
    assert info["max_attempts"] == 3
    assert info["result"] is None and info["error"] is None and info["progress"] is None
    assert info["created_at"] > 0 and info["started_at"] == 0

    with app.worker(concurrency=2, **FAST):
        assert handle.wait(timeout=15) == "succeeded"
        assert handle.result(timeout=15) == 5

    info = handle.job()
    assert info["state"] == "succeeded"
    assert info["attempt"] == 1
    assert info["result"] == 5
    assert info["created_at"] <= info["started_at"] <= info["finished_at"]
    assert app.get_job(handle.id) == handle
    assert app.get_job(handle.id).result() == 5


def test_calling_a_task_runs_the_function_directly(app: App) -> None:
    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42
    assert (
        double.name == f"{__name__}.test_calling_a_task_runs_the_function_directly.<locals>.double"
    )
    assert double.__name__ == "double"
    assert app.counts() == []  # nothing was enqueued


def test_kwargs_and_nested_json_round_trip(app: App) -> None:
    @app.task(name="t.echo")
    def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    payload = {"title": "Amélie", "year": 2001, "tags": ["romance", None, True, 1.5], "n": {}}
    h1 = echo.delay("x", (1, 2), flag=False, data=payload)
    h2 = echo.enqueue(["y"], {"n": 2})
    h3 = app.enqueue("t.echo", kwargs={"only": "kwargs"})
    with app.worker(**FAST):
        assert h1.result(timeout=15) == {
            "args": ["x", [1, 2]],
            "kwargs": {"flag": False, "data": payload},
        }
        assert h2.result(timeout=15) == {"args": ["y"], "kwargs": {"n": 2}}
        assert h3.result(timeout=15) == {"args": [], "kwargs": {"only": "kwargs"}}
    assert h1.info()["kwargs"] == {"flag": False, "data": payload}


def test_higher_priority_runs_first_and_ties_run_in_enqueue_order(app: App) -> None:
    order: list[str] = []

    @app.task(name="t.record")
    def record(label: str) -> None:
        order.append(label)

    @app.task(name="t.urgent", priority=7)
    def urgent(label: str) -> None:
        order.append(label)

    handles = [
        record.enqueue(["p0"], priority=0),
        record.enqueue(["p5-first"], priority=5),
        record.enqueue(["p-3"], priority=-3),
        record.enqueue(["p10"], priority=10),
        record.enqueue(["p5-second"], priority=5),
        urgent.delay("p7-task-default"),
    ]
    assert handles[-1].info()["priority"] == 7
    with app.worker(concurrency=1, **FAST):
        for h in handles:
            assert h.wait(timeout=15) == "succeeded"
    assert order == ["p10", "p7-task-default", "p5-first", "p5-second", "p0", "p-3"]


def test_delayed_job_runs_after_its_delay_not_before(app: App) -> None:
    ran_at: list[float] = []

    @app.task(name="t.stamp")
    def stamp() -> None:
        ran_at.append(time.time())

    before = time.time()
    handle = stamp.enqueue(delay=0.3)
    info = handle.info()
    assert info["state"] == "scheduled"
    assert info["run_at"] >= int(before * 1000) + 300
    with app.worker(**FAST):
        if time.time() * 1000 < info["run_at"] - 50:
            assert handle.status() == "scheduled"
        assert handle.wait(timeout=15) == "succeeded"
    assert ran_at[0] * 1000 >= info["run_at"]
    assert handle.info()["started_at"] >= info["run_at"]


def test_run_at_takes_a_datetime_or_epoch_seconds(app: App) -> None:
    @app.task(name="t.at")
    def at() -> None:
        return None

    when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    h1 = at.enqueue(run_at=when)
    h2 = at.enqueue(run_at=when.timestamp())
    for h in (h1, h2):
        assert h.status() == "scheduled"
        assert abs(h.info()["run_at"] - when.timestamp() * 1000) <= 1
    with pytest.raises(cinejobs.ConfigError, match="delay or run_at"):
        at.enqueue(delay=1, run_at=when)


def test_failing_job_is_retried_then_failed_with_its_error_stored(app: App) -> None:
    attempts: list[int] = []

    @app.task(name="t.boom", max_attempts=3, retry_backoff=0.01)
    def boom(x: int) -> None:
        attempts.append(current_job().attempt)
        raise ValueError(f"bad value {x}")

    handle = boom.delay(7)
    with app.worker(**FAST):
        assert handle.wait(timeout=15) == "failed"
    assert attempts == [1, 2, 3]
    info = handle.info()
    assert info["attempt"] == 3
    assert info["error"]["type"] == "ValueError"
    assert info["error"]["message"] == "bad value 7"
    assert "Traceback (most recent call last)" in info["error"]["traceback"]
    assert 'raise ValueError(f"bad value {x}")' in info["error"]["traceback"]

    with pytest.raises(JobFailed) as failed:
        handle.result(timeout=1)
    assert failed.value.job_id == handle.id
    assert failed.value.error_type == "ValueError"
    assert failed.value.error_message == "bad value 7"
    assert "Traceback" in failed.value.traceback
    assert "ValueError: bad value 7" in str(failed.value)


def test_failed_attempt_is_retried_and_can_then_succeed(app: App) -> None:
    @app.task(name="t.flaky", max_attempts=3, retry_backoff=0.01)
    def flaky() -> int:
        if current_job().attempt == 1:
            raise ConnectionError("upstream 503")
        return current_job().attempt

    handle = flaky.delay()
    with app.worker(**FAST):
        assert handle.result(timeout=15) == 2
    assert handle.info()["attempt"] == 2


def test_unique_key_conflict_names_the_live_job_and_frees_when_it_finishes(app: App) -> None:
    @app.task(name="t.unique")
    def unique(x: int) -> int:
        return x

    first = unique.enqueue([1], unique_key="film:603")
    with pytest.raises(UniqueConflict) as conflict:
        unique.enqueue([2], unique_key="film:603")
    assert conflict.value.existing_id == first.id
    assert conflict.value.unique_key == "film:603"
    assert first.id in str(conflict.value)
    other = unique.enqueue([3], unique_key="film:604")
    assert other.created
    assert first.info()["unique_key"] == "film:603"

    with app.worker(**FAST):
        assert first.wait(timeout=15) == "succeeded"
        again = unique.enqueue([4], unique_key="film:603")  # the key is free once final
        assert again.created and again.id != first.id
        assert again.result(timeout=15) == 4


def test_unique_key_is_held_while_running_and_freed_by_failure_and_cancel(app: App) -> None:
    running = threading.Event()
    release = threading.Event()

    @app.task(name="t.hold")
    def hold() -> None:
        running.set()
        assert release.wait(30)

    @app.task(name="t.fail", max_attempts=1)
    def fail() -> None:
        raise RuntimeError("no")

    held = hold.enqueue(unique_key="k-run")
    failing = fail.enqueue(unique_key="k-fail")
    cancelled = hold.enqueue(unique_key="k-cancel", delay=60)
    assert cancelled.cancel() == "cancelled"
    assert hold.enqueue(unique_key="k-cancel", delay=60).created
    try:
        with app.worker(concurrency=2, **FAST):
            assert running.wait(15)
            assert held.status() == "running"
            with pytest.raises(UniqueConflict) as conflict:
                hold.enqueue(unique_key="k-run")
            assert conflict.value.existing_id == held.id
            assert failing.wait(timeout=15) == "failed"
            assert fail.enqueue(unique_key="k-fail").created
            release.set()
            assert held.wait(timeout=15) == "succeeded"
    finally:
        release.set()


def test_task_unique_callable_derives_the_key_from_the_arguments(app: App) -> None:
    @app.task(name="t.enrich", unique=lambda film_id, **kw: f"enrich:{film_id}")
    def enrich(film_id: int, lang: str = "en") -> str:
        return f"{film_id}-{lang}"

    first = enrich.delay(603)
    assert first.info()["unique_key"] == "enrich:603"
    with pytest.raises(UniqueConflict) as conflict:
        enrich.delay(603, lang="fr")
    assert conflict.value.existing_id == first.id
    assert enrich.delay(604).created
    explicit = enrich.enqueue([603], unique_key="manual")  # an explicit key wins
    assert explicit.info()["unique_key"] == "manual"


def test_enqueue_many_is_one_bulk_call_that_honours_unique_keys(app: App) -> None:
    ran: list[int] = []

    @app.task(name="t.item")
    def item(n: int, **kwargs: Any) -> int:
        ran.append(n)
        return n

    live = item.enqueue([0], unique_key="a")
    handles = app.enqueue_many(
        [
            ("t.item", [1]),
            {"task": "t.item", "args": [2], "unique_key": "a"},  # held by a live job
            {"task": "t.item", "args": [3], "unique_key": "b"},
            {"task": item, "args": [4], "unique_key": "b"},  # held by the job just above
            ("t.item", [5], {"extra": True}),
            {"task": "t.item", "args": [6], "priority": 4, "delay": 0.05},
        ]
    )
    assert [h.created for h in handles] == [True, False, True, False, True, True]
    assert handles[1].id == live.id
    assert handles[3].id == handles[2].id
    assert len({h.id for h in handles}) == 5
    assert handles[5].info()["priority"] == 4
    with app.worker(**FAST):
        for h in [live, *handles]:
            assert h.wait(timeout=15) == "succeeded"
    assert sorted(ran) == [0, 1, 3, 5, 6]
    assert app.enqueue_many([]) == []


def test_enqueue_many_stores_all_or_nothing(broker_url: str) -> None:
    app = App(broker_url, max_payload_bytes=200)
    with pytest.raises(cinejobs.InvalidPayload):
        app.enqueue_many([("t.x", [1]), ("t.x", ["y" * 500]), ("t.x", [3])])
    with pytest.raises(TypeError, match="set"):
        app.enqueue_many([("t.x", [1]), ("t.x", [{1, 2}])])
    assert app.counts() == []


def test_cancelled_queued_and_scheduled_jobs_never_run(app: App) -> None:
    ran: list[str] = []

    @app.task(name="t.mark")
    def mark(label: str) -> str:
        ran.append(label)
        return label

    queued = mark.delay("queued")
    scheduled = mark.enqueue(["scheduled"], delay=0.2)
    assert queued.cancel() == "cancelled"
    assert scheduled.cancel() == "cancelled"
    # Runs after the cancelled scheduled job's time: when it has run, the others were passed over.
    sentinel = mark.enqueue(["sentinel"], delay=0.4)
    with app.worker(**FAST):
        assert sentinel.wait(timeout=15) == "succeeded"
    assert ran == ["sentinel"]
    for h in (queued, scheduled):
        info = h.info()
        assert info["state"] == "cancelled"
        assert info["attempt"] == 0 and info["started_at"] == 0
        with pytest.raises(JobCancelled):
            h.result(timeout=1)
    assert sentinel.cancel() == "succeeded"  # a final job stays as it is
    with pytest.raises(JobNotFound):
        app.cancel("00000000-0000-4000-8000-000000000000")


def test_running_job_sees_cancel_requested_and_ends_cancelled(app: App) -> None:
    started = threading.Event()
    reasons: list[str] = []

    @app.task(name="t.poll_cancel")
    def poll_cancel() -> str:
        job = current_job()
        started.set()
        deadline = time.monotonic() + 20
        while not job.cancel_requested:
            if time.monotonic() > deadline:
                return "never cancelled"
            time.sleep(0.01)
        reasons.append(job.stop_reason)
        job.raise_if_cancelled()
        return "unreachable"

    handle = poll_cancel.delay()
    with app.worker(concurrency=1, lease=0.6, poll_interval=0.01):
        assert started.wait(15)
        assert handle.cancel() == "running"
        assert handle.wait(timeout=15) == "cancelled"
    assert reasons == ["cancelled"]
    info = handle.info()
    assert info["attempt"] == 1  # a cancelled job is not retried
    with pytest.raises(JobCancelled):
        handle.result(timeout=1)


def test_progress_raises_job_cancelled_in_a_cancelled_running_job(app: App) -> None:
    started = threading.Event()
    raised: list[str] = []

    @app.task(name="t.progress_loop")
    def progress_loop() -> str:
        job = current_job()
        started.set()
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                job.progress(0.5, step="working")
                time.sleep(0.01)
        except JobCancelled as exc:
            raised.append(type(exc).__name__)
            raise
        return "never cancelled"

    handle = progress_loop.delay()
    with app.worker(concurrency=1, lease=0.6, poll_interval=0.01):
        assert started.wait(15)
        wait_until(lambda: handle.progress() is not None, what="progress to be stored")
        assert handle.cancel() == "running"
        assert handle.wait(timeout=15) == "cancelled"
    assert raised == ["JobCancelled"]


def test_soft_timeout_fails_the_job_with_job_timeout(app: App) -> None:
    raised: list[str] = []

    @app.task(name="t.overrun", timeout=0.3, max_attempts=1)
    def overrun() -> str:
        job = current_job()
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                job.progress(0.1)
                time.sleep(0.01)
        except cinejobs.JobTimeout as exc:
            raised.append(type(exc).__name__)
            raise
        return "never timed out"

    @app.task(name="t.ignores_timeout", max_attempts=2, retry_backoff=0.01)
    def ignores_timeout() -> str:
        time.sleep(0.5)  # no progress call: the timeout is noticed when it returns
        return "too late"

    h1 = overrun.delay()
    h2 = ignores_timeout.enqueue(timeout=0.15)
    assert h2.info()["timeout_ms"] == 150
    with app.worker(concurrency=2, **FAST):
        assert h1.wait(timeout=15) == "failed"
        assert h2.wait(timeout=15) == "failed"
    assert raised == ["JobTimeout"]
    assert h1.info()["error"]["type"] == "JobTimeout"
    assert h1.info()["attempt"] == 1
    info = h2.info()
    assert info["error"]["type"] == "JobTimeout"
    assert info["attempt"] == 2  # a timed-out attempt is retried while attempts remain
    with pytest.raises(JobFailed) as failed:
        h2.result(timeout=1)
    assert failed.value.error_type == "JobTimeout"


def test_progress_is_visible_through_the_handle_while_running(app: App) -> None:
    reported = threading.Event()
    release = threading.Event()

    @app.task(name="t.half")
    def half() -> str:
        current_job().progress(0.5, step="download", message="half way")
        reported.set()
        assert release.wait(30)
        current_job().progress(7.0, step="done")  # clamped to 1
        return "done"

    handle = half.delay()
    try:
        with app.worker(**FAST):
            assert reported.wait(15)
            assert handle.status() == "running"
            assert handle.progress() == {"fraction": 0.5, "step": "download", "message": "half way"}
            release.set()
            assert handle.result(timeout=15) == "done"
    finally:
        release.set()
    assert handle.progress() == {"fraction": 1.0, "step": "done", "message": ""}


def test_async_task_runs_on_the_worker_loop_and_sees_current_job(app: App) -> None:
    @app.task(name="t.async_fetch")
    async def fetch(x: int) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        job = current_job()

        async def child() -> str:
            return current_job().id

        (child_id,) = await asyncio.gather(child())
        return {
            "x": 2 * x,
            "id": job.id,
            "attempt": job.attempt,
            "child": child_id,
            "thread": threading.current_thread().name,
        }

    @app.task(name="t.async_fail", max_attempts=1)
    async def fail() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    @app.task(name="t.async_timeout", max_attempts=1)
    async def own_timeout() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(10)

    assert fetch.is_async
    handles = [fetch.delay(i) for i in range(5)]
    failing = fail.delay()
    timing_out = own_timeout.delay()
    with app.worker(concurrency=3, **FAST):
        results = [h.result(timeout=15) for h in handles]
        assert failing.wait(timeout=15) == "failed"
        assert timing_out.wait(timeout=15) == "failed"
    for i, (h, r) in enumerate(zip(handles, results, strict=True)):
        assert r == {"x": 2 * i, "id": h.id, "attempt": 1, "child": h.id, "thread": r["thread"]}
    assert {r["thread"] for r in results} == {"cinejobs-asyncio"}
    error = failing.info()["error"]
    assert error["type"] == "KeyError"
    assert "raise KeyError" in error["traceback"]
    # The coroutine's own TimeoutError is its error, not mistaken for a wait that timed out.
    assert timing_out.info()["error"]["type"] == "TimeoutError"


def test_cancelling_a_running_async_job_cancels_its_coroutine(app: App) -> None:
    started = threading.Event()
    cancelled: list[str] = []

    @app.task(name="t.async_forever")
    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(current_job().stop_reason)
            raise

    handle = forever.delay()
    with app.worker(concurrency=1, lease=0.6, poll_interval=0.01):
        assert started.wait(15)
        assert handle.cancel() == "running"
        assert handle.wait(timeout=15) == "cancelled"
    assert cancelled == ["cancelled"]


def test_builtin_tasks_run_on_every_worker(app: App) -> None:
    noop = app.enqueue("cinejobs.noop")
    nap = app.enqueue("cinejobs.sleep", kwargs={"seconds": 0.01})
    with app.worker(**FAST):
        assert noop.result(timeout=15) is None
        assert nap.result(timeout=15) is None


def test_app_enqueue_uses_a_known_tasks_defaults(app: App) -> None:
    @app.task(name="t.configured", queue="slow", max_attempts=5, timeout=2.5, priority=4)
    def configured() -> None:
        return None

    info = app.enqueue("t.configured").info()
    assert (info["queue"], info["max_attempts"], info["timeout_ms"], info["priority"]) == (
        "slow",
        5,
        2500,
        4,
    )
    info = app.enqueue(configured, queue="fast", max_attempts=1, timeout=1, priority=-1).info()
    assert (info["queue"], info["max_attempts"], info["timeout_ms"], info["priority"]) == (
        "fast",
        1,
        1000,
        -1,
    )
    unknown = app.enqueue("elsewhere.task").info()  # a worker elsewhere may know it
    assert (unknown["queue"], unknown["max_attempts"], unknown["timeout_ms"]) == (
        "default",
        3,
        0,
    )
    with pytest.raises(TypeError, match="unknown enqueue option"):
        app.enqueue("t.configured", retries=3)


def test_worker_consumes_the_queues_of_the_apps_tasks_by_default(app: App) -> None:
    assert app.worker().queues == ["default"]

    @app.task(name="t.a", queue="enrich")
    def a() -> str:
        return "a"

    @app.task(name="t.b", queue="index")
    def b() -> str:
        return "b"

    assert app.default_queues() == ["enrich", "index"]
    ha, hb = a.delay(), b.delay()
    with app.worker(**FAST) as worker:
        assert worker.queues == ["enrich", "index"]
        assert worker.running
        assert (ha.result(timeout=15), hb.result(timeout=15)) == ("a", "b")
    assert not worker.running
    # Read after stop: the acker counts an ack after storing it, and a waiting handle may see
    # the stored result first.
    assert worker.stats()["succeeded"] == 2
    assert worker.stop() == worker.stop()  # stopping twice is harmless


def test_list_and_count_jobs(app: App) -> None:
    @app.task(name="t.listed")
    def listed() -> None:
        return None

    handles = [listed.delay() for _ in range(3)]
    app.enqueue("t.other", queue="q2")
    assert sorted(app.counts()) == [("default", "queued", 3), ("q2", "queued", 1)]
    assert {j["id"] for j in app.jobs(task="t.listed")} == {h.id for h in handles}
    assert [j["task"] for j in app.jobs(queue="q2")] == ["t.other"]
    assert len(app.jobs(limit=2)) == 2
    assert app.jobs(state="failed") == []
