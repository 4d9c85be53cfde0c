"""Fixtures of the Python suites: broker URLs for every broker kind, an app on each, real CLI
workers as subprocesses, real redis-server processes."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers import Producer, StartCliWorker, StartWorker, WorkerProcess, spawn_cli, wait_until

import cinejobs

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR.parents[1] / "scripts"))

from secret_scan import (  # noqa: E402, F401 (pytest finds the plugin's hooks and fixture here)
    POSTGRES_PASSWORD,
    REDIS_PASSWORD,
    _no_secret_leaks,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_unconfigure,
)

from postgres_server import PostgresServer, find_postgres_bindir  # noqa: E402
from redis_server import RedisServer, find_redis_server  # noqa: E402

# A developer's environment (CINEJOBS_BROKER, ...) must not leak into the tests, nor into the
# workers they start.
for _name in [n for n in os.environ if n.startswith("CINEJOBS_")]:
    del os.environ[_name]

IN_CI = os.environ.get("CI", "").lower() in {"true", "1", "yes"}


def need_server(message: str) -> None:
    """A server a test needs is missing: fail in CI, skip elsewhere (STYLE.md, Tests)."""
    if IN_CI:
        pytest.fail(f"{message} (CI must run every broker's tests)", pytrace=False)
    pytest.skip(message)


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


def _redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # One server for the session; each test its own key prefix, so nothing is flushed.
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url(prefix=f"test-{uuid.uuid4().hex}:")


def _postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # One server for the session; each test its own schema, migrated on first open.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return f"{server.url()}?schema=t_{uuid.uuid4().hex[:16]}&migrate=true"


# One factory per broker kind; the suites run once per kind, each test on an empty broker.
BROKER_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": _sqlite_url,
    "redis": _redis_url,
    "postgres": _postgres_url,
}


@pytest.fixture(params=sorted(BROKER_FACTORIES))
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty broker of each kind."""
    return BROKER_FACTORIES[request.param](request, tmp_path)


@pytest.fixture(params=["sqlite", "redis"])
def local_or_redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty SQLite or Redis broker: for tests of real worker processes that are too
    slow to run on every broker and need the embedded one and a server one."""
    return BROKER_FACTORIES[request.param](request, tmp_path)


@pytest.fixture
def client(local_or_redis_url: str) -> Iterator[cinejobs.App]:
    """An App on `local_or_redis_url`, as a web app enqueueing for the workers a test starts."""
    application = cinejobs.App(local_or_redis_url)
    yield application
    application.close()


def _start_redis(directory: Path | None = None) -> RedisServer:
    if find_redis_server() is None:
        need_server("redis-server is not installed (scripts/install-deps.sh installs it)")
    # A password every Redis URL of the suite carries: the secret scan (secret_scan.py) looks
    # for it in every message, log line and output the suite produces.
    return RedisServer(directory, password=REDIS_PASSWORD).start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server (appendonly, appendfsync always) on a free loopback port for the
    whole session; tests share it through their own key prefixes."""
    server = _start_redis()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster on a free loopback port for the whole session; tests share it
    through their own schemas."""
    if find_postgres_bindir() is None:
        need_server("PostgreSQL is not installed (scripts/install-deps.sh installs it)")
    with PostgresServer(password=POSTGRES_PASSWORD) as server:
        yield server


@pytest.fixture
def start_redis() -> Iterator[Callable[[], RedisServer]]:
    """Start a redis-server of the test's own (for tests that stop, restart or freeze it);
    every one is stopped and its directory removed at teardown."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = _start_redis()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()
        server.close()


@pytest.fixture
def start_postgres() -> Iterator[Callable[[], PostgresServer]]:
    """Start a PostgreSQL cluster of the test's own (for tests that stop or restart it); every
    one is stopped and removed at teardown."""
    if find_postgres_bindir() is None:
        need_server("PostgreSQL is not installed (scripts/install-deps.sh installs it)")
    servers: list[PostgresServer] = []

    def start() -> PostgresServer:
        server = PostgresServer(password=POSTGRES_PASSWORD).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """A directory for the record files the test apps write."""
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def producers() -> Iterator[list[Producer]]:
    """Producer threads a test starts; each is halted and joined at teardown."""
    started: list[Producer] = []
    yield started
    for producer in started:
        producer.halt.set()
        producer.join(timeout=30)


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
def start_cli_worker(tmp_path: Path) -> Iterator[StartCliWorker]:
    """Start the real CLI worker (`python -m cinejobs worker`) on a given broker URL, with an
    app module from tests/python/apps. Workers still alive at teardown are killed."""
    started: list[WorkerProcess] = []

    def start(
        broker_url: str,
        app: str = "apps.faults:app",
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 4,
        lease: float | None = None,
        grace: float | None = None,
        extra: Sequence[str] = (),
    ) -> WorkerProcess:
        cmd = [
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
        worker = spawn_cli(cmd, tmp_path / f"worker-{len(started)}.log", tmp_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(timeout=10)


@pytest.fixture
def start_worker(broker_url: str, start_cli_worker: StartCliWorker) -> StartWorker:
    """Start the real CLI worker on the test's broker (see start_cli_worker)."""

    def start(app: str = "apps.faults:app", **options: object) -> WorkerProcess:
        return start_cli_worker(broker_url, app, **options)

    return start


def pytest_report_header() -> str:
    return f"cinejobs {cinejobs.__version__}, brokers: {', '.join(sorted(BROKER_FACTORIES))}"
