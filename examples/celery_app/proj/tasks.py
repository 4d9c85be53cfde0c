"""The example's tasks: one per Celery feature the drop-in worker must honour. Side effects go
to Redis (the `ran:*` keys) so tests can count executions across processes."""

from __future__ import annotations

import json
import os
from typing import Any

import redis

from cinejobs import Batcher
from cinejobs.contrib.celery import Task, batcher, report_progress

from .celery import REDIS_URL, app

_redis = redis.Redis.from_url(REDIS_URL)
# Tests give each run its own prefix for these side-effect keys.
PREFIX = os.environ.get("EXAMPLE_KEY_PREFIX", "example:")


def mark(name: str, value: Any = 1) -> None:
    """Record one execution of `name` (a counter) and its last value."""
    _redis.hincrby(PREFIX + "runs", name, 1)
    _redis.rpush(PREFIX + "values:" + name, repr(value))


@app.task
def add(x: int, y: int) -> int:
    mark("add", (x, y))
    return x + y


@app.task(bind=True, max_retries=5)
def flaky(self: Any, key: str, failures: int) -> dict[str, Any]:
    """Fails `failures` times, retrying with a countdown, then returns its retry count."""
    mark("flaky:" + key, self.request.retries)
    if self.request.retries < failures:
        raise self.retry(countdown=1)
    return {"retries": self.request.retries, "id": self.request.id}


@app.task(autoretry_for=(ConnectionError,), max_retries=2, default_retry_delay=0)
def always_down(key: str) -> None:
    """Raises ConnectionError every time: autoretry_for retries it max_retries times."""
    mark("always_down:" + key)
    raise ConnectionError("upstream is down")


@app.task(ignore_result=True)
def record(value: Any, key: str) -> str:
    mark("record:" + key, value)
    return "not stored"


@app.task
def boom(message: str) -> None:
    raise ValueError(message)


@app.task
def on_error(failed_task_id: str, key: str) -> None:
    """An errback (link_error): receives the failed task's id."""
    mark("on_error:" + key, failed_task_id)


@app.task(bind=True)
def count(self: Any, key: str) -> int:
    """Counts its executions and which worker ran it, for the mixed-fleet test."""
    kind = "cinejobs" if self.request.hostname.startswith("cinejobs@") else "celery"
    _redis.hincrby(PREFIX + "count-by-worker", kind, 1)
    return int(_redis.hincrby(PREFIX + "count:" + key, "executions", 1))


@app.task(bind=True, base=Task, unique_key=lambda movie_id, steps: f"movie:{movie_id}")
def enrich(self: Any, movie_id: int, steps: int) -> dict[str, Any]:
    """Step 1: a unique lock per movie and progress reports, under either worker."""
    gate = PREFIX + "gate:" + str(movie_id)
    for step in range(steps):
        report_progress((step + 1) / steps, step=f"step {step + 1}", message=f"movie {movie_id}")
        # Waits (up to 10 s) for the test to open the gate, so the test can see it running.
        _redis.blpop([gate], timeout=10)
    mark("enrich", movie_id)
    return {"movie": movie_id, "steps": steps}


@app.task(
    bind=True,
    base=Task,
    global_rate_limit="5/s",
    rate_limit_burst=2,
    # Each batch of calls (a test run) has its own limit of 5/s; None would share one.
    rate_limit_key=lambda batch, n: batch,
)
def call_upstream(self: Any, batch: str, n: int) -> dict[str, Any]:
    """Step 1: at most 5 starts a second (bursts of 2) across every worker. Records when it
    started, by the Redis server's clock (the limit's clock), and in which process."""
    seconds, micros = _redis.time()
    started = {"at": seconds + micros / 1e6, "pid": os.getpid(), "host": self.request.hostname}
    _redis.rpush(f"{PREFIX}upstream:{batch}", json.dumps(started))
    _redis.hincrby(f"{PREFIX}upstream-runs:{batch}", str(n), 1)
    return {"n": n, "retries": self.request.retries}


@batcher(app)
def movies() -> Batcher:
    """Step 1: one Batcher per worker process, written out in batches of 50 (a PostgresSink or an
    ElasticsearchSink in a real app) and when the worker stops."""

    def write(items: list[dict[str, Any]]) -> None:
        _redis.rpush(PREFIX + "movies", *(json.dumps(item) for item in items))

    # Tests set a long max_age, so that only full batches and the stop write anything.
    return Batcher(write, max_items=50, max_age=float(os.environ.get("EXAMPLE_BATCH_MAX_AGE", 5)))


@app.task
def store_movie(movie: dict[str, Any]) -> None:
    movies.add(movie)
