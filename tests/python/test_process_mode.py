"""Process mode, done for real: `cinejobs worker --processes N` subprocesses on SQLite and Redis,
running tests/python/apps/process_mode.py, whose handlers spin forever, segfault, leak memory
and exit. Each test checks what the job records in the broker and what the worker goes on to
do, never how fast it is (bench/bench_processes.py measures that)."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import StartCliWorker, WorkerProcess, read_lines, spawn_cli, wait_until

import cinejobs
from cinejobs.errors import ConfigError

APP = "apps.process_mode:app"
HARD_TIMEOUT = 2.0  # pm.forever's hard_timeout
KILL_GRACE = 1.0  # the core's default between SIGTERM and SIGKILL


@pytest.fixture
def start(
    start_cli_worker: StartCliWorker, local_or_redis_url: str
) -> Callable[..., WorkerProcess]:
    def run(*extra: str, concurrency: int = 2, grace: float | None = None) -> WorkerProcess:
        worker = start_cli_worker(
            local_or_redis_url, APP, concurrency=concurrency, grace=grace, extra=extra
        )
        worker.wait_started(60)
        return worker

    return run


def seconds_running(job: dict[str, Any]) -> float:
    return (int(job["finished_at"]) - int(job["started_at"])) / 1000


def test_a_job_past_its_hard_timeout_is_killed_and_fails_while_50_others_complete(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    forever = client.enqueue("pm.forever", max_attempts=1)
    others = [client.enqueue("pm.pid", [0.02]) for _ in range(50)]
    start("--processes", "2")
    assert forever.wait(timeout=30) == "failed"
    job = forever.info()
    assert job["error"]["type"] == "JobTimeout"
    assert "hard time limit of 2 s" in job["error"]["message"]
    # Killed at its limit (SIGTERM ends a pure-Python loop at once), not after a lease.
    assert HARD_TIMEOUT <= seconds_running(job) < HARD_TIMEOUT + KILL_GRACE + 1.5
    assert [h.wait(timeout=60) for h in others] == ["succeeded"] * 50
    # A fresh child took the killed one's place: jobs enqueued now still run in two children.
    later = [client.enqueue("pm.pid", [0.3]) for _ in range(8)]
    assert [h.wait(timeout=60) for h in later] == ["succeeded"] * 8
    assert len({h.result()["pid"] for h in later}) == 2


def test_a_segfault_fails_only_its_own_job_at_once_and_the_worker_goes_on(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    worker = start("--processes", "2", "--lease", "30")
    crash = client.enqueue("pm.segfault", max_attempts=1)
    assert crash.wait(timeout=30) == "failed"
    job = crash.info()
    assert job["error"]["type"] == "WorkerCrashed"
    assert "signal 11 (SIGSEGV)" in job["error"]["message"]
    assert seconds_running(job) < 2.0, "settled when the child died, not after the 30 s lease"
    after = [client.enqueue("pm.pid") for _ in range(20)]
    assert [h.wait(timeout=60) for h in after] == ["succeeded"] * 20
    assert worker.proc.poll() is None
    assert "died, killed by signal 11 (SIGSEGV)" in worker.output()


def test_a_child_that_exits_mid_job_has_its_job_retried_and_the_retry_can_succeed(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    start("--processes", "1", concurrency=1)
    dying = client.enqueue("pm.exit", [3], max_attempts=2)
    assert dying.wait(timeout=30) == "failed"
    job = dying.info()
    assert job["attempt"] == 2, "retried once, per its max_attempts"
    assert job["error"]["type"] == "WorkerCrashed"
    assert "exit code 3" in job["error"]["message"]
    assert client.enqueue("pm.pid").wait(timeout=30) == "succeeded"


def test_max_memory_per_child_replaces_a_child_that_grew_past_it_and_loses_no_job(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    worker = start("--processes", "1", "--max-memory-per-child", "200", concurrency=1)
    before = client.enqueue("pm.pid")
    assert before.wait(timeout=30) == "succeeded"
    hog = client.enqueue("pm.hog", [300], max_attempts=1)
    assert hog.wait(timeout=30) == "succeeded"
    after = [client.enqueue("pm.pid") for _ in range(10)]
    assert [h.wait(timeout=60) for h in after] == ["succeeded"] * 10
    hog_pid = hog.result()["pid"]
    assert before.result()["pid"] == hog_pid
    assert hog_pid not in {h.result()["pid"] for h in after}, "the grown child was not replaced"
    assert "over --max-memory-per-child 200 MB" in worker.output()


def test_max_jobs_per_child_runs_100_jobs_exactly_once_over_recycled_children(
    client: cinejobs.App, start: Callable[..., WorkerProcess], logdir: Path
) -> None:
    handles = client.enqueue_many([("pm.record", [str(logdir)]) for _ in range(100)])
    start("--processes", "2", "--max-jobs-per-child", "10", concurrency=2)
    assert [h.wait(timeout=120) for h in handles] == ["succeeded"] * 100
    lines = [line.split() for line in read_lines(logdir / "ran.log")]
    runs = Counter(job_id for job_id, _attempt, _pid in lines)
    assert set(runs) == {h.id for h in handles}
    assert max(runs.values()) == 1, "a job ran twice"
    per_child = Counter(pid for _id, _attempt, pid in lines)
    assert max(per_child.values()) <= 10
    assert len(per_child) >= 10


def test_sigterm_to_the_supervisor_gives_running_jobs_their_grace_and_returns_the_rest(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    worker = start("--processes", "2", concurrency=1, grace=10)
    running = [client.enqueue("pm.sleep", [1.5]) for _ in range(2)]
    wait_until(lambda: all(h.status() == "running" for h in running), 30, 0.02, "jobs to run")
    queued = [client.enqueue("pm.sleep", [1.5]) for _ in range(3)]
    worker.terminate()
    assert worker.wait(30) == 0
    assert [h.status() for h in running] == ["succeeded"] * 2
    for h in queued:
        job = h.info()
        assert job["state"] == "queued"
        assert job["attempt"] == 0


def test_sigterm_past_the_grace_returns_running_jobs_and_stops_the_children(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    worker = start("--processes", "1", concurrency=2, grace=0.5)
    long = [client.enqueue("pm.sleep", [60]) for _ in range(2)]
    wait_until(lambda: all(h.status() == "running" for h in long), 30, 0.02, "jobs to run")
    worker.terminate()
    assert worker.wait(30) == 0
    for h in long:
        job = h.info()
        assert job["state"] == "queued", "returned to the queue, not left to its lease"
        assert job["attempt"] == 0, "a stop past the grace does not count the attempt"


def test_thread_mode_refuses_a_hard_timeout_naming_process_mode(tmp_path: Path) -> None:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")

    @app.task(hard_timeout=5)
    def slow() -> None:
        pass

    with pytest.raises(ConfigError, match="process mode"):
        app.worker()
    with pytest.raises(ConfigError, match="process mode"):
        cinejobs.App(f"sqlite:///{tmp_path}/other.db").worker(hard_timeout=5)


def test_the_cli_refuses_process_options_without_processes(tmp_path: Path) -> None:
    for flag, value in (("--hard-timeout", "5"), ("--max-jobs-per-child", "10")):
        worker = spawn_cli(
            ["worker", "--app", APP, "--broker", f"sqlite:///{tmp_path}/j.db", flag, value],
            tmp_path / f"{uuid.uuid4().hex}.log",
            tmp_path,
        )
        assert worker.wait(30) == 2
        assert "needs process mode (--processes N)" in worker.output()


def test_a_child_that_cannot_import_the_app_fails_the_start_with_its_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken_app.py").write_text(
        "import os, cinejobs\n"
        "app = cinejobs.App()\n"
        "if os.environ.get('CINEJOBS_CHILD_FD'):\n"
        "    raise RuntimeError('cannot import in a child')\n"
    )
    worker = spawn_cli(
        ["worker", "--app", "broken_app:app", "--processes", "1"],
        tmp_path / "worker.log",
        tmp_path,
    )
    assert worker.wait(60) != 0
    out = worker.output()
    assert "RuntimeError: cannot import in a child" in out
    assert "process mode cannot start" in out


def test_sigint_to_the_supervisor_stops_it_gracefully_like_sigterm(
    client: cinejobs.App, start: Callable[..., WorkerProcess]
) -> None:
    worker = start("--processes", "1", concurrency=1, grace=10)
    job = client.enqueue("pm.sleep", [1.0])
    wait_until(lambda: job.status() == "running", 30, 0.02, "the job to run")
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 0
    assert job.status() == "succeeded", "the child finished its job within the grace"


def test_json_logs_of_a_process_mode_worker_stay_json_when_a_child_crashes(
    local_or_redis_url: str, client: cinejobs.App, tmp_path: Path
) -> None:
    stderr = tmp_path / "stderr.log"
    worker = spawn_cli(
        [
            "worker",
            "--app",
            APP,
            "--broker",
            local_or_redis_url,
            "--processes",
            "1",
            "--log-format",
            "json",
        ],
        tmp_path / "stdout.log",
        tmp_path,
        stderr_log=stderr,
    )
    try:
        worker.wait_started(60)
        crash = client.enqueue("pm.segfault", max_attempts=1)
        assert crash.wait(timeout=30) == "failed"
        after = client.enqueue("pm.pid")
        assert after.wait(timeout=30) == "succeeded"
        wait_until(
            lambda: any("succeeded in" in line for line in read_lines(stderr)), 15, 0.02, "logs"
        )
        worker.terminate()
        assert worker.wait(30) == 0
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    records = [json.loads(line) for line in read_lines(stderr)]  # every line is JSON
    core = [r for r in records if r["logger"] == "cinejobs.core"]
    assert any("killed by signal 11 (SIGSEGV)" in r["message"] for r in core), records
    failed = [r for r in records if r.get("outcome") == "failed"]
    assert [r["error_type"] for r in failed] == ["WorkerCrashed"]
