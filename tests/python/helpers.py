"""Helpers shared by the Python suites (importable because pytest puts this directory on
sys.path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

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


def spawn_cli(args: Sequence[str], log: Path, cwd: Path) -> WorkerProcess:
    """Start `python -m cinejobs ARGS` (a worker, a scheduler) with the test apps importable,
    its output unbuffered into `log`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cinejobs", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
    return WorkerProcess(proc, log)


StartWorker = Callable[..., WorkerProcess]
"""start_worker(app="apps.faults:app", *, queues, concurrency, lease, grace, extra)"""
StartCliWorker = Callable[..., WorkerProcess]
"""start_cli_worker(broker_url, app="apps.faults:app", *, queues, concurrency, lease, ...)"""
