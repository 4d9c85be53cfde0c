"""A job whose stored document is damaged fails alone: the real CLI worker reserves it in one
batch with good jobs, the good ones run and succeed, and only the damaged one ends failed
(InvalidPayload, naming the job), without ever reaching its handler.

The damage is written straight into each store, behind the broker's back: a Redis job hash whose
packed field claims bytes that are not there, a SQLite or PostgreSQL row whose args are not JSON.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import StartWorker, record_ids, wait_until

from cinejobs import App

FINAL = {"succeeded", "failed", "cancelled"}


def corrupt_job(request: pytest.FixtureRequest, broker_url: str, job_id: str) -> None:
    """Damage job `job_id`'s stored document with the store's own raw commands."""
    scheme = urlsplit(broker_url).scheme
    query = parse_qs(urlsplit(broker_url).query)
    if scheme == "sqlite":
        with closing(sqlite3.connect(broker_url.removeprefix("sqlite:///"))) as db:
            changed = db.execute("UPDATE jobs SET args = '[1, 2' WHERE id = ?", (job_id,))
            assert changed.rowcount == 1
            db.commit()
    elif scheme == "redis":
        server = request.getfixturevalue("redis_server")
        server.command("HSET", f"{query['prefix'][0]}job:{job_id}", "d", "9999:truncated")
    else:
        server = request.getfixturevalue("postgres_server")
        schema = query["schema"][0]
        server.sql(f"UPDATE \"{schema}\".jobs SET args = '[1, 2' WHERE id = '{job_id}'")


def test_a_damaged_job_fails_alone_and_the_rest_of_its_batch_succeeds(
    request: pytest.FixtureRequest,
    broker_url: str,
    app: App,
    start_worker: StartWorker,
    logdir: Path,
) -> None:
    handles = [
        app.enqueue("faults.work", kwargs={"logdir": str(logdir), "seconds": 0}) for _ in range(5)
    ]
    poisoned = handles[2]
    corrupt_job(request, broker_url, poisoned.id)

    # All five are waiting before the worker starts, so its first reserve leases them together.
    worker = start_worker(concurrency=8)
    wait_until(
        lambda: all(h.status() in FINAL for h in handles),
        timeout=30,
        what="every job of the batch to end",
    )

    good = [h for h in handles if h is not poisoned]
    assert [h.status() for h in good] == ["succeeded"] * 4
    assert sorted(record_ids(logdir / "completed.log")) == sorted(h.id for h in good)
    assert poisoned.id not in record_ids(logdir / "started.log"), "its handler must not run"

    info = poisoned.info()
    assert info["state"] == "failed"
    assert info["error"]["type"] == "InvalidPayload"
    assert poisoned.id in info["error"]["message"]
    assert "field '" in info["error"]["message"]
    assert info["attempt"] == 1, "a job that cannot be decoded is not retried"
    # It can still be read and listed; a part that is not JSON reads as its stored text.
    assert info["args"] in ([], "[1, 2"), info["args"]
    assert poisoned.id in {job["id"] for job in app.jobs(state="failed")}
    assert "reserve failed" not in worker.output()
