"""Faults the engine promises to survive, each caused for real against `cinejobs worker`
processes (tests/python/apps/faults.py): SIGKILL, SIGTERM, long delays, long jobs, a handler
holding the GIL, cancels from another process, concurrent workers.

The task functions append "<job id> <attempt> <pid>" to started.log and completed.log, so the
tests can count executions independently of what the broker reports.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import StartWorker, read_lines, record_ids, wait_until

from cinejobs import App, JobHandle

pytestmark = pytest.mark.slow

FINAL = {"succeeded", "failed", "cancelled"}


def work(app: App, logdir: Path, seconds: float, **options: Any) -> JobHandle:
    return app.enqueue("faults.work", kwargs={"logdir": str(logdir), "seconds": seconds}, **options)


def gate_job(app: App, logdir: Path, gate: Path, **options: Any) -> JobHandle:
    return app.enqueue("faults.gate", kwargs={"logdir": str(logdir), "gate": str(gate)}, **options)


def states(handles: list[JobHandle]) -> list[str]:
    return [h.status() for h in handles]


def all_final(handles: list[JobHandle]) -> bool:
    return all(s in FINAL for s in states(handles))


def running_count(app: App) -> int:
    return sum(n for _, state, n in app.counts() if state == "running")


def records(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in read_lines(path):
        job_id, attempt, pid = line.split()
        out.append((job_id, int(attempt), int(pid)))
    return out


def test_sigkilled_worker_jobs_each_complete_exactly_once_after_the_lease_expires(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    # Quick high-priority jobs finish (and are acked) first; then the worker holds 4 slow
    # jobs of ~1 s each when it is killed.
    quick = [work(app, logdir, 0.05, priority=10) for _ in range(4)]
    slow = [work(app, logdir, 1.0) for _ in range(16)]
    every = quick + slow
    slow_ids = {h.id for h in slow}
    first = start_worker(concurrency=4, lease=1.5)

    def holding_slow_jobs() -> set[str]:
        started = set(record_ids(logdir / "started.log")) & slow_ids
        quick_done = all(s == "succeeded" for s in states(quick))
        return started if quick_done and len(started) >= 4 else set()

    wait_until(holding_slow_jobs, timeout=30, what="the worker to hold 4 slow jobs")
    first.kill()
    completed_before = set(record_ids(logdir / "completed.log"))
    interrupted = {j["id"] for j in app.jobs(state="running")}
    assert interrupted, "the killed worker held no running job"
    assert interrupted <= slow_ids - completed_before

    second = start_worker(concurrency=8, lease=1.5)
    wait_until(lambda: all_final(every), timeout=60, what="every job to end")

    assert states(every) == ["succeeded"] * len(every)
    completions = record_ids(logdir / "completed.log")
    assert Counter(completions) == Counter(h.id for h in every), "a job completed twice or never"
    assert running_count(app) == 0
    for job_id, attempt, pid in records(logdir / "completed.log"):
        if job_id in interrupted:
            assert (attempt, pid) == (2, second.pid)
            assert app.get_job(job_id).info()["attempt"] == 2
    assert second.proc.poll() is None


def test_sigterm_lets_in_flight_jobs_finish_and_leaves_the_rest_queued(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    jobs = [work(app, logdir, 1.0) for _ in range(12)]
    worker = start_worker(concurrency=4)
    wait_until(
        lambda: len(read_lines(logdir / "started.log")) >= 4, timeout=30, what="4 jobs to start"
    )
    worker.terminate()
    assert worker.wait(timeout=30) == 0

    started = record_ids(logdir / "started.log")
    assert len(started) == 4  # never more than its free slots
    assert Counter(record_ids(logdir / "completed.log")) == Counter(started)
    by_state: dict[str, set[str]] = {}
    for h in jobs:
        by_state.setdefault(h.status(), set()).add(h.id)
    assert by_state == {"succeeded": set(started), "queued": {h.id for h in jobs} - set(started)}
    for h in jobs:
        if h.id not in started:
            assert h.info()["attempt"] == 0
    out = worker.output()
    assert "SIGTERM received" in out
    assert "4 running job(s) finished, 0 returned to the queue" in out
    assert "\r" not in out  # piped output: plain lines


def test_sigterm_with_a_grace_shorter_than_the_job_never_hands_it_out_while_it_runs(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    # The handler sleeps through its stop token: a thread cannot be stopped, so the job stays
    # this worker's (its lease renewed) until the process exits, and runs again only after its
    # lease expired, the attempt counted, as after a kill.
    job = work(app, logdir, 3.0)
    worker = start_worker(concurrency=1, grace=0.3, lease=1.0)
    wait_until(lambda: record_ids(logdir / "started.log"), timeout=30, what="the job to start")
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    assert "0 returned to the queue" in worker.output()
    assert "some handlers were still busy" in worker.output()
    assert job.status() == "running"
    assert read_lines(logdir / "completed.log") == []

    start_worker(concurrency=1, lease=1.0)
    assert job.wait(timeout=30) == "succeeded"
    assert job.info()["attempt"] == 2
    assert record_ids(logdir / "completed.log") == [job.id]


def test_job_delayed_far_past_the_lease_runs_exactly_once(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    # Celery's ETA/visibility-timeout duplicates: a delay 4x the lease, a run 2x the lease,
    # two workers polling the same queue.
    jobs = [work(app, logdir, 1.0, delay=2.0) for _ in range(5)]
    run_at = {h.id: h.info()["run_at"] for h in jobs}
    start_worker(concurrency=4, lease=0.5)
    start_worker(concurrency=4, lease=0.5)
    wait_until(lambda: all_final(jobs), timeout=60, what="the delayed jobs to end")

    assert states(jobs) == ["succeeded"] * 5
    started = records(logdir / "started.log")
    assert sorted(job_id for job_id, _, _ in started) == sorted(run_at)
    assert {attempt for _, attempt, _ in started} == {1}
    assert Counter(record_ids(logdir / "completed.log")) == Counter(list(run_at))
    for h in jobs:
        info = h.info()
        assert info["attempt"] == 1
        assert info["started_at"] >= run_at[h.id]


def test_worker_reserves_no_more_than_its_free_slots(
    app: App, start_worker: StartWorker, logdir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    long_one = gate_job(app, logdir, gate)
    first = start_worker(concurrency=2, lease=5)
    wait_until(lambda: long_one.status() == "running", timeout=30, what="the long job to run")

    # Short jobs enqueued behind a long one still run on the free slot.
    short = [work(app, logdir, 0.05) for _ in range(6)]
    most_running = 0

    def short_done() -> bool:
        nonlocal most_running
        most_running = max(most_running, running_count(app))
        return all(s == "succeeded" for s in states(short))

    wait_until(short_done, timeout=30, what="the short jobs to finish")
    assert most_running <= 2
    assert long_one.status() == "running"

    # With both slots busy, new jobs stay unreserved: a second worker takes them.
    long_two = gate_job(app, logdir, gate)
    wait_until(lambda: long_two.status() == "running", timeout=30, what="the second long job")
    more = [work(app, logdir, 0.05) for _ in range(3)]
    second = start_worker(concurrency=2, lease=5)
    most_running = 0

    def more_done() -> bool:
        nonlocal most_running
        most_running = max(most_running, running_count(app))
        return all(s == "succeeded" for s in states(more))

    wait_until(more_done, timeout=30, what="the second worker to run the new jobs")
    assert most_running <= 4
    assert states([long_one, long_two]) == ["running", "running"]
    pids = {
        pid
        for job_id, _, pid in records(logdir / "completed.log")
        if job_id in {h.id for h in more}
    }
    assert pids == {second.pid}

    gate.touch()
    assert long_one.wait(timeout=30) == "succeeded"
    assert long_two.wait(timeout=30) == "succeeded"
    assert {
        pid
        for job_id, _, pid in records(logdir / "completed.log")
        if job_id in {long_one.id, long_two.id}
    } == {first.pid}


def test_handler_holding_the_gil_past_three_leases_is_not_redelivered(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    job = app.enqueue("faults.spin", kwargs={"logdir": str(logdir), "seconds": 3.5})
    # A free second slot would pick the job up again if its lease were lost.
    start_worker(concurrency=2, lease=1.0)
    seen: set[tuple[str, int]] = set()

    def finished() -> bool:
        info = job.info()
        seen.add((info["state"], info["attempt"]))
        return info["state"] in FINAL

    wait_until(finished, timeout=60, what="the spinning job to end")
    assert job.status() == "succeeded"
    result = job.result()
    assert result["elapsed"] >= 3.5
    assert job.info()["attempt"] == 1
    assert {attempt for state, attempt in seen if state == "running"} == {1}
    assert [(a, p) for _, a, p in records(logdir / "started.log")] == [(1, result["pid"])]
    assert record_ids(logdir / "completed.log") == [job.id]


def test_cancel_from_another_process_holds_so_cancelled_jobs_never_start(
    app: App, start_worker: StartWorker, logdir: Path, tmp_path: Path
) -> None:
    # Cancelled before any worker runs...
    early_queued = work(app, logdir, 0.01)
    early_scheduled = work(app, logdir, 0.01, delay=0.5)
    assert early_queued.cancel() == "cancelled"
    assert early_scheduled.cancel() == "cancelled"

    # ...and while a worker (another process) is running, busy with a long job.
    gate = tmp_path / "gate"
    blocker = gate_job(app, logdir, gate)
    start_worker(concurrency=1, lease=5)
    wait_until(lambda: blocker.status() == "running", timeout=30, what="the blocker to run")
    queued = work(app, logdir, 0.01)
    scheduled = work(app, logdir, 0.01, delay=1.0)
    assert queued.cancel() == "cancelled"
    assert scheduled.cancel() == "cancelled"
    gate.touch()
    # Due after every cancelled job: once it has run, the worker has passed them all by.
    sentinel = work(app, logdir, 0.01, delay=1.5)
    assert sentinel.wait(timeout=30) == "succeeded"

    assert set(record_ids(logdir / "started.log")) == {blocker.id, sentinel.id}
    for h in (early_queued, early_scheduled, queued, scheduled):
        info = h.info()
        assert (info["state"], info["attempt"], info["started_at"]) == ("cancelled", 0, 0)


def test_enqueue_many_unique_keys_hold_across_the_batch_and_live_jobs(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    kwargs = {"logdir": str(logdir), "seconds": 0.01}
    live = app.enqueue("faults.work", kwargs=kwargs, unique_key="film:1")
    handles = app.enqueue_many(
        [{"task": "faults.work", "kwargs": kwargs, "unique_key": f"film:{i % 3}"} for i in range(9)]
    )
    assert [h.created for h in handles] == [True, False, True] + [False] * 6
    keys = {h.id for h in handles} | {live.id}
    assert len(keys) == 3
    start_worker(concurrency=4)
    jobs = [live, *handles]
    wait_until(lambda: all_final(jobs), timeout=30, what="the unique jobs to end")
    assert Counter(record_ids(logdir / "started.log")) == Counter(keys)


def test_two_workers_share_a_queue_without_running_a_job_twice_or_losing_one(
    app: App, start_worker: StartWorker, logdir: Path
) -> None:
    kwargs = {"logdir": str(logdir), "seconds": 0}
    jobs = app.enqueue_many([("faults.work", [], kwargs)] * 300)
    one = start_worker(concurrency=4)
    two = start_worker(concurrency=4)
    wait_until(
        lambda: sum(n for _, s, n in app.counts() if s in FINAL) == 300,
        timeout=60,
        interval=0.05,
        what="300 jobs to end",
    )
    assert set(states(jobs)) == {"succeeded"}
    started = records(logdir / "started.log")
    assert Counter(job_id for job_id, _, _ in started) == Counter(h.id for h in jobs)
    assert {attempt for _, attempt, _ in started} == {1}
    assert {pid for _, _, pid in started} <= {one.pid, two.pid}
    assert os.path.getsize(logdir / "completed.log") > 0
