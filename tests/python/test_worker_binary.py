"""The standalone `cinejobs-worker` binary, installed by `pip install .` next to the `cinejobs`
command: it runs native handlers with no Python in its process, on every broker kind, and
stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_until

import cinejobs

pytestmark = pytest.mark.slow

BINARY = Path(sys.executable).with_name("cinejobs-worker")


class BinaryWorker:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(BINARY), *argv], stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def start_binary(tmp_path: Path) -> Iterator[Callable[..., BinaryWorker]]:
    started: list[BinaryWorker] = []

    def start(*argv: str) -> BinaryWorker:
        worker = BinaryWorker(list(argv), tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        wait_until(
            lambda: "started:" in worker.output() or worker.proc.poll() is not None,
            timeout=30,
            what="cinejobs-worker to start",
        )
        assert worker.proc.poll() is None, worker.output()
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def test_it_is_installed_next_to_the_cinejobs_command() -> None:
    done = subprocess.run([str(BINARY), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "--broker URL" in done.stdout
    assert "SIGTERM" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "--concurrency takes a whole number >= 1, got '0'"),
        (["--grace", "soon"], "--grace takes seconds >= 0, got 'soon'"),
        (["--queues", ","], "--queues names no queue"),
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--broker", "ftp://host/x"], "unknown broker URL scheme 'ftp'"),
    ],
)
def test_bad_arguments_exit_2_naming_what_was_wrong(argv: list[str], message: str) -> None:
    done = subprocess.run([str(BINARY), *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert message in done.stderr


def test_it_runs_native_jobs_and_fails_tasks_it_does_not_have(
    broker_url: str, start_binary: Callable[..., BinaryWorker]
) -> None:
    app = cinejobs.App(broker_url)
    noops = app.enqueue_many([("cinejobs.noop", (), {}, )] * 200)  # fmt: skip
    sleeper = app.enqueue("cinejobs.sleep", kwargs={"seconds": 0.2})
    python_only = app.enqueue("myapp.python_task", max_attempts=1)
    worker = start_binary("--broker", broker_url, "--concurrency", "4", "--status-every", "0.2")
    for handle in [*noops, sleeper]:
        assert handle.wait(timeout=60) == "succeeded"
    assert sleeper.progress() == {"fraction": 1.0, "step": "sleeping", "message": ""}
    assert python_only.wait(timeout=60) == "failed"
    assert python_only.info()["error"]["type"] == "UnknownTask"
    wait_until(lambda: "succeeded 201" in worker.output(), timeout=30, what="a status line")
    assert worker.stop() == 0
    assert "stopped: " in worker.output()
    app.close()


def test_sigterm_finishes_short_jobs_and_returns_long_ones_to_the_queue(
    broker_url: str, start_binary: Callable[..., BinaryWorker]
) -> None:
    app = cinejobs.App(broker_url)
    short = app.enqueue("cinejobs.sleep", kwargs={"seconds": 0.3})
    long = app.enqueue("cinejobs.sleep", kwargs={"seconds": 60})
    worker = start_binary("--broker", broker_url, "--concurrency", "2", "--grace", "2")
    wait_until(
        lambda: short.status() == "running" and long.status() == "running",
        timeout=30,
        what="both jobs to start",
    )
    assert worker.stop(signal.SIGTERM) == 0
    assert short.status() == "succeeded"
    assert long.status() == "queued"  # returned with its attempt not counted
    assert long.info()["attempt"] == 0
    assert "1 running job(s) finished, 1 returned to the queue" in worker.output()
    app.close()


def test_a_second_signal_quits_at_once(
    broker_url: str, start_binary: Callable[..., BinaryWorker]
) -> None:
    app = cinejobs.App(broker_url)
    long = app.enqueue("cinejobs.sleep", kwargs={"seconds": 60})
    worker = start_binary("--broker", broker_url, "--grace", "60")
    wait_until(lambda: long.status() == "running", timeout=30, what="the job to start")
    worker.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in worker.output(), timeout=30, what="the stop to begin")
    assert worker.stop(signal.SIGINT, timeout=10) == 130
    assert "quitting now" in worker.output()
    app.close()
