"""PostgreSQL restarted under load, caused for real against a cluster the test starts on a free
loopback port: a producer keeps enqueuing one job per call and a `cinejobs worker` process
keeps running them while the server is stopped (a clean ``fast`` shutdown, or ``immediate``:
the crash-like stop that skips the checkpoint, so the restart replays the WAL) and started
again on the same port. Both sides reconnect by themselves; every enqueue that returned (a
committed transaction) is processed; and every job ends in exactly one final state,
``succeeded`` (an ack whose lease was lost in the outage cannot also fail it, and no job is
left running or queued).

A SIGKILLed worker's jobs (completed once each after their leases expire) are shown by
test_faults.py, which runs on every broker kind, PostgreSQL included; wrong passwords, missing
databases and unmigrated schemas by test_postgres.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Producer, StartCliWorker, read_lines, record_ids, wait_until

import cinejobs
from cinejobs import App
from postgres_server import PostgresServer

pytestmark = pytest.mark.slow


def migrated_url(server: PostgresServer) -> str:
    url = f"{server.url()}?schema=t_{uuid.uuid4().hex[:12]}"
    cinejobs._core.migrate(url)
    return url


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load_processes_every_committed_enqueue_once_final(
    mode: str,
    start_postgres: Callable[[], PostgresServer],
    start_cli_worker: StartCliWorker,
    producers: list[Producer],
    logdir: Path,
) -> None:
    server = start_postgres()
    url = migrated_url(server)
    worker = start_cli_worker(url, concurrency=4, lease=2.0)
    worker.wait_started()
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
    server.stop(mode)
    stopped_at = time.monotonic()
    # The server stays away until both sides have seen it gone: the producer's enqueues fail,
    # and the worker logs an error naming the server.
    failures_before = producer.failures
    where = f"127.0.0.1:{server.port}"
    wait_until(
        lambda: producer.failures > failures_before + 5 and where in worker.output(),
        timeout=30,
        what="the producer and the worker to see PostgreSQL gone",
    )
    # Down for longer than the worker's 2 s leases, so leases of jobs it holds expire in the
    # outage and the recovery after it races the worker's pending acks: the case where a job
    # could end in two final states if an ack did not check that its delivery still owns it.
    time.sleep(max(0.0, stopped_at + 3.0 - time.monotonic()))
    server.start_again()
    acked_at_restart = len(producer.acked)
    wait_until(
        lambda: len(producer.acked) >= acked_at_restart + 100,
        timeout=60,
        what="the producer to enqueue again after the restart",
    )
    acked = producer.finish()
    after_restart = set(acked[acked_at_restart:])
    wait_until(
        lambda: set(acked) <= completed(),
        timeout=90,
        interval=0.05,
        what=f"all {len(acked)} committed jobs to be processed",
    )
    assert worker.proc.poll() is None, f"the worker died:\n{worker.output()}"
    # The same worker process ran jobs enqueued after the restart: it reconnected by itself.
    assert any(
        int(line.split()[2]) == worker.pid and line.split()[0] in after_restart
        for line in read_lines(logdir / "completed.log")
    )
    # Every stored job, including any stored twice by an enqueue retried after its commit's
    # reply was lost, ends succeeded and only succeeded.
    app = App(url)
    try:

        def states() -> dict[str, int]:
            return {state: n for _, state, n in app.counts()}

        wait_until(
            lambda: set(states()) == {"succeeded"},
            timeout=60,
            interval=0.1,
            what="every job to end succeeded",
        )
        assert states()["succeeded"] >= len(set(acked))
        assert all(app.get_job(job_id).status() == "succeeded" for job_id in acked)
    finally:
        app.close()
