"""Faults the Redis broker promises to survive, each caused for real against a redis-server
started by the test on a free loopback port (append-only file, appendfsync always):

- redis-server restarted (SIGTERM) or killed (SIGKILL) and started again on the same port
  while a producer keeps enqueuing and a `cinejobs worker` process keeps running jobs: every
  enqueue that returned is processed, and both sides reconnect by themselves;
- Redis unreachable (nothing listening, a listener that never answers, a frozen server): a
  BrokerUnavailable naming host:port within the configured timeout, never a hang.

A SIGKILLed worker's jobs (completed once each after their leases expire) are shown by
test_faults.py, which runs on every broker kind, Redis included.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Producer, StartCliWorker, run_through_a_restart, wait_until

from cinejobs import App, BrokerUnavailable
from redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

# How long a test lets one Redis call take before it must have failed (the broker URL's
# timeout_ms is 500): generous for a loaded 2-core machine, far below a hang.
PROMPT = 5.0


def fresh_prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_redis_restart_under_load_loses_no_enqueue_that_returned(
    how: str,
    start_redis: Callable[[], RedisServer],
    start_cli_worker: StartCliWorker,
    producers: list[Producer],
    logdir: Path,
) -> None:
    server = start_redis()
    url = server.url(prefix=fresh_prefix(), timeout_ms=500)
    worker = start_cli_worker(url, concurrency=4, lease=2.0)
    worker.wait_started()

    def stop() -> None:
        if how == "sigterm":
            server.stop()  # Redis fsyncs the append-only file and exits
        else:
            server.kill()  # nothing but what appendfsync always already wrote survives

    # Started again on the same port and directory: the append-only file is loaded again.
    acked = run_through_a_restart(
        url, worker, producers, logdir, stop=stop, start=server.start, address=server.address
    )
    app = App(url)
    wait_until(
        lambda: all(app.get_job(job_id).status() == "succeeded" for job_id in acked),
        timeout=30,
        interval=0.1,
        what="every acknowledged job to be stored as succeeded",
    )


def test_enqueue_with_nothing_listening_names_host_and_port_at_once() -> None:
    port = free_port()
    app = App(f"redis://127.0.0.1:{port}/0?timeout_ms=500")
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=f"127\\.0\\.0\\.1:{port}"):
        app.enqueue("t.anything")
    assert time.monotonic() - start < PROMPT


@pytest.fixture
def mute_listener() -> Iterator[int]:
    """A port that accepts TCP connections (into the listen backlog) and never answers: a
    Redis that is there but hangs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_enqueue_to_a_redis_that_never_answers_fails_within_the_timeout(
    mute_listener: int,
) -> None:
    app = App(f"redis://127.0.0.1:{mute_listener}/0?timeout_ms=500")
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=f"127\\.0\\.0\\.1:{mute_listener}"):
        app.enqueue("t.anything")
    assert time.monotonic() - start < PROMPT


def test_enqueue_to_a_frozen_redis_times_out_then_works_once_it_thaws(
    start_redis: Callable[[], RedisServer],
) -> None:
    server = start_redis()
    assert server.proc is not None
    app = App(server.url(prefix=fresh_prefix(), timeout_ms=500))
    first = app.enqueue("t.anything")  # connected and working
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=f"127\\.0\\.0\\.1:{server.port}"):
            app.enqueue("t.anything")
        assert time.monotonic() - start < PROMPT
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    # The same app carries on once Redis answers again.
    second = wait_until(lambda: _enqueue_or_none(app), timeout=30, what="enqueue to work again")
    assert {first.status(), second.status()} == {"queued"}


def _enqueue_or_none(app: App) -> object:
    try:
        return app.enqueue("t.anything")
    except BrokerUnavailable:
        return None
