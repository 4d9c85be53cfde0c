"""Graceful stop, done for real: a stop past the grace never lets a second worker start a job
whose handler still runs (proved by the handlers' own start and end records, not by the
broker), a stop after every handler returned is always reported clean, and `cinejobs worker`
leaves through the normal exit path, where atexit flushes batchers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from apps import graceful
from helpers import StartCliWorker, read_lines, wait_until

import cinejobs
from cinejobs.errors import ConfigError

APP = "apps.graceful:app"


def events(logdir: Path) -> list[tuple[str, str, int, int, float]]:
    """(event, job id, attempt, pid, time) in the order the handlers wrote them."""
    out = []
    for line in read_lines(logdir / "events.log"):
        event, job_id, attempt, pid, at = line.split()
        out.append((event, job_id, int(attempt), int(pid), float(at)))
    return out


def assert_never_two_at_once(records: list[tuple[str, str, int, int, float]]) -> None:
    """Between one handler's start and its end (or its process's end) no other starts."""
    running: set[int] = set()
    for event, _job, _attempt, pid, _at in records:
        if event == "start":
            assert not running, f"pid {pid} started the job while {running} still ran it"
            running.add(pid)
        else:
            running.discard(pid)


def test_an_embedded_stop_past_grace_keeps_a_running_job_until_its_handler_returns(
    local_or_redis_url: str, client: cinejobs.App, logdir: Path
) -> None:
    first = cinejobs.App(local_or_redis_url)
    second = cinejobs.App(local_or_redis_url)
    for app in (first, second):
        app.task(name="graceful.stubborn", max_attempts=3)(graceful.stubborn.fn)
    job = client.enqueue("graceful.stubborn", [str(logdir), 2.0])
    a = first.worker(["default"], concurrency=1, grace=0.1, lease=1.0).start()
    wait_until(lambda: len(read_lines(logdir / "events.log")) == 1, 30, 0.01, "a start")
    b = second.worker(["default"], concurrency=1, lease=1.0, poll_interval=0.01).start()
    report = a.stop()
    assert report["clean"] is False, "a handler still runs: the stop was not clean"
    assert report["returned"] == 0, "the running job was handed back"
    assert job.wait(timeout=30) == "succeeded"
    b.stop()
    records = events(logdir)
    assert_never_two_at_once(records)
    assert [r[0] for r in records] == ["start", "end"], records
    assert job.info()["attempt"] == 1, "stored by the handler that ran it, exactly once"
    first.close()
    second.close()


def test_a_cli_stop_past_grace_lets_the_job_run_again_only_after_the_process_is_gone(
    local_or_redis_url: str, client: cinejobs.App, logdir: Path, start_cli_worker: StartCliWorker
) -> None:
    job = client.enqueue("graceful.stubborn", [str(logdir), 4.0])
    a = start_cli_worker(local_or_redis_url, APP, concurrency=1, grace=0.1, lease=1.0)
    a.wait_started(60)
    wait_until(lambda: len(read_lines(logdir / "events.log")) == 1, 30, 0.01, "a start")
    b = start_cli_worker(local_or_redis_url, APP, concurrency=1, lease=1.0)
    b.wait_started(60)
    a.terminate()
    assert a.wait(30) == 0
    a_gone = time.time()
    assert "some handlers were still busy" in a.output()
    assert job.wait(timeout=60) == "succeeded"
    records = events(logdir)
    # The first handler never ended (its process exited under it); the second started after.
    starts = [r for r in records if r[0] == "start"]
    assert [r[3] for r in starts] == [a.pid, b.pid], records
    assert starts[1][4] >= a_gone - 0.05, "the second start came before the first process ended"
    assert job.info()["attempt"] == 2, "the lease expired after the process: the attempt counts"
    b.terminate()
    b.wait(30)


def test_stops_after_every_handler_returned_are_always_clean_under_cpu_contention(
    tmp_path: Path,
) -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")

        @app.task(name="quick")
        def quick(i: int) -> int:
            return i

        for round_ in range(200):
            handles = [quick.delay(i) for i in range(8)]
            worker = app.worker(["default"], concurrency=4, poll_interval=0.005).start()
            for h in handles:
                assert h.wait(timeout=30) == "succeeded"
            report = worker.stop()
            assert report["clean"], f"round {round_}: a stop with every handler done was forced"
        app.close()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_the_cli_worker_leaves_through_atexit_which_flushes_batchers(
    tmp_path: Path, start_cli_worker: StartCliWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "notes.jsonl"
    monkeypatch.setenv("GRACEFUL_NOTES", str(notes))
    url = f"sqlite:///{tmp_path}/jobs.db"
    client = cinejobs.App(url)
    handles = [client.enqueue("graceful.note", [f"n{i}"]) for i in range(5)]
    worker = start_cli_worker(url, APP, concurrency=2)
    worker.wait_started(60)
    for h in handles:
        assert h.wait(timeout=30) == "succeeded"
    assert not notes.exists(), "the batcher flushed before the process ended"
    worker.terminate()
    assert worker.wait(30) == 0
    assert "still busy" not in worker.output()
    assert sorted(read_lines(notes)) == [f'"n{i}"' for i in range(5)]
    client.close()


def test_hard_timeout_refusal_is_a_config_error_before_anything_runs(tmp_path: Path) -> None:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    app.task(name="t", hard_timeout=1)(lambda: None)
    with pytest.raises(ConfigError, match="a thread cannot be killed"):
        app.worker()
    app.close()
