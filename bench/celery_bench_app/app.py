"""The benchmark's Celery app: one task that returns its argument, with results stored in the
Redis result backend (both workers write every result). Broker from $BENCH_REDIS_URL."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)


@app.task(name="bench.echo")
def echo(value: int) -> int:
    return value
