"""Fixtures of the Python suites: broker URLs for every broker kind, an app on each, real CLI
workers as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers import StartWorker, WorkerProcess, wait_until

import cinejobs

# A developer's environment (CINEJOBS_BROKER, ...) must not leak into the tests, nor into the
# workers they start.
for _name in [n for n in os.environ if n.startswith("CINEJOBS_")]:
    del os.environ[_name]

TESTS_DIR = Path(__file__).resolve().parent


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


# One factory per broker kind; the suites run once per kind. Redis and PostgreSQL join here
# when their brokers exist (each giving every test its own key prefix / database).
BROKER_FACTORIES: dict[str, Callable[[Path], str]] = {
    "sqlite": _sqlite_url,
}


@pytest.fixture(params=sorted(BROKER_FACTORIES))
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty broker of each kind."""
    return BROKER_FACTORIES[request.param](tmp_path)


@pytest.fixture
def app(broker_url: str) -> Iterator[cinejobs.App]:
    """An App on a fresh broker (its tasks are defined by each test)."""
    application = cinejobs.App(broker_url)
    yield application
    application.close()


@pytest.fixture
def wait() -> Callable[..., object]:
    """The wait_until helper, for tests that prefer a fixture."""
    return wait_until


@pytest.fixture
def start_worker(broker_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Start the real CLI worker (`python -m cinejobs worker`) on the test's broker, with an
    app module from tests/python/apps. Workers still alive at teardown are killed."""
    started: list[WorkerProcess] = []

    def start(
        app: str = "apps.faults:app",
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 4,
        lease: float | None = None,
        grace: float | None = None,
        extra: Sequence[str] = (),
    ) -> WorkerProcess:
        cmd = [
            sys.executable,
            "-m",
            "cinejobs",
            "worker",
            "--app",
            app,
            "--broker",
            broker_url,
            "--concurrency",
            str(concurrency),
            "--poll-interval",
            "0.02",
        ]
        if queues is not None:
            cmd += ["--queues", ",".join(queues)]
        if lease is not None:
            cmd += ["--lease", str(lease)]
        if grace is not None:
            cmd += ["--grace", str(grace)]
        cmd += list(extra)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp_path,
                env=env,
            )
        worker = WorkerProcess(proc, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(timeout=10)


def pytest_report_header() -> str:
    return f"cinejobs {cinejobs.__version__}, brokers: {', '.join(sorted(BROKER_FACTORIES))}"
