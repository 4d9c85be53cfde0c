"""The start stamp every system's `stamp` task records (see __init__)."""

from __future__ import annotations

import os
import threading
import time

import redis

STAMPS = "bench:stamps"
_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    # One client per process, made lazily: prefork children must not share their parent's.
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        return _client


def record_start(seq: int) -> None:
    started = time.monotonic_ns()
    _redis().rpush(STAMPS, f"{seq} {started}")
