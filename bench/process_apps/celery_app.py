"""Celery tasks for bench_processes.py (`celery -A process_apps.celery_app worker ...`); broker
from $BENCH_CELERY_URL, results ignored (nothing reads them)."""

from __future__ import annotations

import os

from celery import Celery

from .workload import spin as _spin

app = Celery("bench", broker=os.environ["BENCH_CELERY_URL"])
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.spin")
def spin(n: int) -> None:
    _spin(n)
