"""Celery tasks for the bench (`celery -A redis_apps.celery_app worker ...`); broker from
$BENCH_REDIS_URL, results ignored (nothing reads them)."""

from __future__ import annotations

import os

from celery import Celery

from ._stamp import record_start

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.stamp")
def stamp(seq: int) -> None:
    record_start(seq)
