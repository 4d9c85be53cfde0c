"""cinejobs: background jobs with a C++ core.

import cinejobs
app = cinejobs.App("sqlite:///jobs.db")

@app.task(queue="enrich", max_attempts=3, timeout=30)
def summarize(book_id: int) -> dict:
    cinejobs.current_job().progress(0.5, step="llm")
    return {"ok": True}

handle = summarize.delay(42)
with app.worker(concurrency=16):
    print(handle.result(timeout=10))
"""

from __future__ import annotations

from . import batch, postgres, tmdb
from ._core import __version__
from ._redact import redact
from .app import App, Task
from .batch import Batcher
from .context import CurrentJob, current_job
from .errors import (
    BatcherClosed,
    BatcherFull,
    BrokerUnavailable,
    CinejobsError,
    ConfigError,
    InvalidPayload,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobTimeout,
    Retry,
    TmdbAuthError,
    TmdbError,
    UniqueConflict,
    UnknownTask,
)
from .handle import JobHandle
from .metrics import MetricsServer
from .rate_limit import RateLimiter
from .schedules import Scheduler, ScheduleSpec, ScheduleStatus
from .worker import Worker

__all__ = [
    "App",
    "Batcher",
    "BatcherClosed",
    "BatcherFull",
    "BrokerUnavailable",
    "CinejobsError",
    "ConfigError",
    "CurrentJob",
    "InvalidPayload",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobTimeout",
    "MetricsServer",
    "RateLimiter",
    "Retry",
    "ScheduleSpec",
    "ScheduleStatus",
    "Scheduler",
    "Task",
    "TmdbAuthError",
    "TmdbError",
    "UniqueConflict",
    "UnknownTask",
    "Worker",
    "__version__",
    "batch",
    "current_job",
    "postgres",
    "redact",
    "tmdb",
]
