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

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Producer, StartCliWorker, run_through_a_restart, wait_until

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
    # Down for longer than the worker's 2 s leases, so leases of jobs it holds expire in the
    # outage and the recovery after it races the worker's pending acks: the case where a job
    # could end in two final states if an ack did not check that its delivery still owns it.
    acked = run_through_a_restart(
        url,
        worker,
        producers,
        logdir,
        stop=lambda: server.stop(mode),
        start=server.start_again,
        address=f"127.0.0.1:{server.port}",
        down_for=3.0,
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
