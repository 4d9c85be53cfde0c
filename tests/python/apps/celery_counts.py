"""A Celery app whose tasks succeed, fail for good, retry and are held back by a global rate
limit, for the test that compares `cinejobs worker --celery`'s counters with what Celery's
result backend records. The broker and backend come from COUNTS_REDIS_URL, the queue from
COUNTS_QUEUE; results are extended so that each records its retries."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from cinejobs.contrib.celery import Task

REDIS_URL = os.environ.get("COUNTS_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("COUNTS_QUEUE", "counts")

app = Celery("celery_counts", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    result_extended=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="counts.ok")
def ok(n: int) -> int:
    return n


@app.task(name="counts.boom")
def boom(n: int) -> None:
    raise ValueError(f"boom {n}")


@app.task(bind=True, name="counts.flaky", max_retries=5)
def flaky(self: Any, key: str, failures: int) -> int:
    """Retries `failures` times (Celery publishes each retry), then succeeds."""
    if self.request.retries < failures:
        raise self.retry(countdown=0)
    return int(self.request.retries)


@app.task(bind=True, name="counts.give_up", max_retries=1)
def give_up(self: Any, n: int) -> None:
    """Retries once, then fails for good with MaxRetriesExceededError's cause."""
    raise self.retry(exc=ConnectionError(f"down {n}"), countdown=0)


@app.task(bind=True, base=Task, name="counts.limited", global_rate_limit="10/s")
def limited(self: Any, n: int) -> int:
    """At most 10 starts a second across workers: the rest are held back (snoozed)."""
    return n
