"""Helpers shared by the Python suites (importable because pytest puts this directory on
sys.path)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from cinejobs import App, BrokerUnavailable

T = TypeVar("T")

TESTS_DIR = Path(__file__).resolve().parent


def wait_until(
    predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test
    with ``what`` if it does not within ``timeout`` seconds. Synchronises on a condition,
    never on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what or predicate!r} "
                f"(last value: {value!r})"
            )
        time.sleep(interval)


def read_lines(path: Path) -> list[str]:
    """The lines of a log file the test apps append to (empty when it does not exist yet)."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def record_ids(path: Path) -> list[str]:
    """Job ids of a record file written by tests/python/apps: one "<id> <attempt> <pid>" line
    per event."""
    return [line.split()[0] for line in read_lines(path)]


class WorkerProcess:
    """A `cinejobs worker` (or `cinejobs scheduler`) subprocess, as spawn_cli starts it."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_started(self, timeout: float = 30.0) -> None:
        """Wait until the worker logged that it started (its signal handlers are then
        installed and it reserves jobs)."""

        def started() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode} before starting:\n{self.output()}"
                )
            return " started: " in self.output()

        wait_until(started, timeout, 0.02, "the worker to start")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, holding whatever jobs it holds."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} still running after {timeout:g} s:\n{self.output()}"
            ) from None


def spawn_cli(
    args: Sequence[str], log: Path, cwd: Path, *, stderr_log: Path | None = None
) -> WorkerProcess:
    """Start `python -m cinejobs ARGS` (a worker, a scheduler) with the test apps importable,
    its output unbuffered into `log` (its stderr into `stderr_log` when given)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("wb") as out, (stderr_log or Path(os.devnull)).open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cinejobs", *args],
            stdout=out,
            stderr=err if stderr_log is not None else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
    return WorkerProcess(proc, log)


StartWorker = Callable[..., WorkerProcess]
"""start_worker(app="apps.faults:app", *, queues, concurrency, lease, grace, extra)"""
StartCliWorker = Callable[..., WorkerProcess]
"""start_cli_worker(broker_url, app="apps.faults:app", *, queues, concurrency, lease, ...)"""


class Producer(threading.Thread):
    """Enqueues `faults.work` jobs one call at a time until stopped, pacing itself lightly.
    An enqueue that raised BrokerUnavailable is retried (it may or may not have been stored:
    at least once); ``acked`` holds the id of every enqueue that returned."""

    def __init__(self, url: str, logdir: Path) -> None:
        super().__init__(name="producer", daemon=True)
        self.app = App(url)
        self.logdir = logdir
        self.acked: list[str] = []
        self.failures = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                try:
                    handle = self.app.enqueue(
                        "faults.work",
                        kwargs={"logdir": str(self.logdir), "seconds": 0},
                    )
                except BrokerUnavailable:
                    self.failures += 1
                    self.halt.wait(0.05)  # back off while Redis is away; then the same job again
                    continue
                self.acked.append(handle.id)
                self.halt.wait(0.002)  # a steady stream, not a flood the worker cannot follow
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self) -> list[str]:
        self.halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the producer did not stop"
        if self.error is not None:
            raise AssertionError(f"the producer failed: {self.error!r}") from self.error
        return list(self.acked)


def run_through_a_restart(
    url: str,
    worker: WorkerProcess,
    producers: list[Producer],
    logdir: Path,
    *,
    stop: Callable[[], object],
    start: Callable[[], object],
    address: str,
    down_for: float = 0.0,
) -> list[str]:
    """Drive the broker restart the fault suites share: with ``worker`` (a started CLI worker
    running tests/python/apps/faults.py) and a Producer enqueuing on ``url``, let jobs flow,
    ``stop`` the server, keep it down until both sides have seen it gone (the producer's
    enqueues fail, the worker logs an error naming ``address`` beyond its start line) and at
    least ``down_for`` seconds, ``start`` it again, let the producer enqueue 100 more, and wait
    until the worker has completed every job whose enqueue returned. Returns those job ids."""
    producer = Producer(url, logdir)
    producers.append(producer)
    producer.start()

    def completed() -> set[str]:
        return set(record_ids(logdir / "completed.log"))

    wait_until(
        lambda: len(producer.acked) >= 100 and len(completed()) >= 50,
        timeout=60,
        what="jobs to flow before the restart",
    )
    stop()
    stopped_at = time.monotonic()
    failures_before = producer.failures
    wait_until(
        lambda: producer.failures > failures_before + 5 and worker.output().count(address) > 1,
        timeout=30,
        what=f"the producer and the worker to see the server at {address} gone",
    )
    time.sleep(max(0.0, stopped_at + down_for - time.monotonic()))  # the outage itself
    start()
    acked_at_restart = len(producer.acked)
    wait_until(
        lambda: len(producer.acked) >= acked_at_restart + 100,
        timeout=60,
        what="the producer to enqueue again after the restart",
    )
    acked = producer.finish()
    wait_until(
        lambda: set(acked) <= completed(),
        timeout=90,
        interval=0.05,
        what=f"all {len(acked)} acknowledged jobs to be processed",
    )
    assert worker.proc.poll() is None, f"the worker died:\n{worker.output()}"
    # The same worker process ran jobs enqueued after the restart: it reconnected by itself.
    after_restart = set(acked[acked_at_restart:])
    assert any(
        int(line.split()[2]) == worker.pid and line.split()[0] in after_restart
        for line in read_lines(logdir / "completed.log")
    ), "the worker ran no job enqueued after the restart"
    return acked


def free_port() -> int:
    """A TCP port free on loopback right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_gracefully(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM a server the test started, SIGKILL it if it has not exited within ``timeout``;
    returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
