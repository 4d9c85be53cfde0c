"""What only the Redis broker has, against real redis-server processes: its URL forms (TCP
with a password and a db, Unix socket), key prefixes that let apps share one Redis (every key
under its prefix, nothing seen across prefixes or dbs), and pushed wake-ups: an idle worker
and ``JobHandle.wait()`` react to a change without polling.

The rest of the API, the CLI and the faults run on Redis through the ``broker_url`` fixture;
the Redis-specific faults are in test_redis_faults.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import StartCliWorker, wait_until

from cinejobs import App, CinejobsError, ConfigError
from redis_server import RedisServer

FAST: dict[str, Any] = {"lease": 1.5, "poll_interval": 0.01}


def fresh_prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


def define_tasks(app: App) -> Any:
    @app.task(name="r.add")
    def add(a: int, b: int) -> int:
        return a + b

    return add


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    with RedisServer(password="s3cret-pw") as server:
        yield server


def test_unix_socket_url_reaches_the_same_jobs_as_tcp(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    over_unix = App(redis_server.unix_url(db=3, prefix=prefix))
    add = define_tasks(over_unix)
    handle = add.delay(2, 3)
    with over_unix.worker(concurrency=2, **FAST):
        assert handle.result(timeout=15) == 5
    over_tcp = App(redis_server.url(db=3, prefix=prefix))
    assert over_tcp.get_job(handle.id).info()["result"] == 5


def test_password_and_db_from_the_url(password_server: RedisServer) -> None:
    app = App(password_server.url(db=2, prefix=fresh_prefix()))
    add = define_tasks(app)
    handle = add.delay(20, 22)
    with app.worker(concurrency=2, **FAST):
        assert handle.result(timeout=15) == 42
    keys = password_server.scan(db=2)
    assert keys, "the jobs were not stored in db 2"
    assert password_server.scan(db=0) == []


def test_wrong_password_is_a_clear_error_that_does_not_echo_it(
    password_server: RedisServer,
) -> None:
    url = password_server.url().replace("s3cret-pw", "not-the-password")
    with pytest.raises(CinejobsError) as caught:
        App(url + "?timeout_ms=2000").enqueue("r.add", [1, 2])
    message = str(caught.value)
    assert password_server.address in message
    assert "not-the-password" not in message
    assert "auth" in message.lower() or "password" in message.lower()


def test_every_key_is_under_the_prefix_and_prefixes_do_not_see_each_other(
    redis_server: RedisServer,
) -> None:
    # db 7 is this test's alone, so every key in it must be under one of the two prefixes.
    prefix_a, prefix_b = fresh_prefix(), fresh_prefix()
    app_a = App(redis_server.url(db=7, prefix=prefix_a))
    app_b = App(redis_server.url(db=7, prefix=prefix_b))
    add_a = define_tasks(app_a)
    define_tasks(app_b)
    done = add_a.delay(1, 1)
    later = app_a.enqueue("r.add", [1, 2], delay=3600)
    cancelled = app_a.enqueue("r.add", [1, 3])
    cancelled.cancel()
    app_a.enqueue("r.add", [1, 4], unique_key="film:1")
    with app_b.worker(concurrency=2, **FAST) as worker_b:
        # The worker on prefix B neither sees nor runs prefix A's jobs.
        assert app_b.counts() == []
        assert app_b.jobs() == []
        with pytest.raises(LookupError):
            app_b.get_job(done.id)
    assert worker_b.stats()["reserved"] == 0
    with app_a.worker(concurrency=2, **FAST):
        assert done.result(timeout=15) == 2
    assert later.status() == "scheduled"
    keys = redis_server.scan(db=7)
    assert any(k.startswith(prefix_a) for k in keys), "no key under the app's prefix"
    assert [k for k in keys if not k.startswith((prefix_a, prefix_b))] == []


def test_default_prefix_is_cinejobs(redis_server: RedisServer) -> None:
    app = App(redis_server.url(db=5))
    handle = app.enqueue("r.add", [1, 2])
    keys = redis_server.scan(db=5)
    assert keys
    assert all(k.startswith("cinejobs:") for k in keys), keys
    assert app.get_job(handle.id).status() == "queued"


def test_idle_cli_worker_wakes_for_a_new_job_without_polling(
    redis_server: RedisServer, start_cli_worker: StartCliWorker, tmp_path: Path
) -> None:
    # A 60 s poll interval: only a pushed wake-up can start these jobs within the wait below.
    url = redis_server.url(prefix=fresh_prefix())
    worker = start_cli_worker(url, concurrency=2, extra=["--poll-interval", "60"])
    worker.wait_started()
    app = App(url)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    for _ in range(3):
        job = app.enqueue("faults.work", kwargs={"logdir": str(logdir), "seconds": 0})
        assert job.wait(timeout=10) == "succeeded"


def test_wait_returns_on_the_change_not_at_the_next_poll(
    redis_server: RedisServer, start_cli_worker: StartCliWorker, tmp_path: Path
) -> None:
    # JobHandle.wait(poll=60) in this process; the job ends in a worker process. Without the
    # broker's change notice wait would sleep up to 60 s before looking again.
    url = redis_server.url(prefix=fresh_prefix())
    app = App(url)
    gate = tmp_path / "gate"
    logdir = tmp_path / "logs"
    logdir.mkdir()
    job = app.enqueue("faults.gate", kwargs={"logdir": str(logdir), "gate": str(gate)})
    start_cli_worker(url, concurrency=1).wait_started()
    wait_until(lambda: job.status() == "running", timeout=30, what="the job to run")
    returned: list[tuple[str, float]] = []

    def waiter() -> None:
        returned.append((job.wait(timeout=60, poll=60), time.monotonic()))

    thread = threading.Thread(target=waiter)
    thread.start()
    opened_at = time.monotonic()
    gate.touch()
    thread.join(timeout=60)
    assert returned, "wait() did not return"
    state, returned_at = returned[0]
    assert state == "succeeded"
    assert returned_at - opened_at < 10


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/notadb",
        "redis://127.0.0.1:6379/0?unknown_option=1",
        "redis://127.0.0.1:6379/0?timeout_ms=soon",
        "unix://?db=0",
    ],
)
def test_malformed_redis_url_is_config_error_before_connecting(url: str) -> None:
    with pytest.raises(ConfigError):
        App(url).connect()
