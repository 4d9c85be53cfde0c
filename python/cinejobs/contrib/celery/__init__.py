"""cinejobs for Celery apps, in two steps a team can take one at a time.

Step 1, this package: what Celery lacks, added to existing tasks without changing how the app
enqueues, under Celery's own worker and under cinejobs'. :class:`Task`, one task base class,
offers:

- a unique lock (``unique_key=``): a second ``.delay()`` while a run with the same key is live
  raises UniqueConflict naming the live task (the 409 pattern);
- a rate limit that holds across every worker (``global_rate_limit="40/10s"``), which snoozes
  the deliveries it refuses without counting a retry or holding a worker slot;
- progress in cinejobs' ``{step, fraction, message}`` shape (:func:`report_progress`, read back
  with :func:`progress_of` or ``AsyncResult.info``);
- batchers for bulk writes (:func:`batcher`): one :class:`cinejobs.Batcher` per worker process,
  declared once per app and written out when the worker stops.

Step 2, :mod:`cinejobs.contrib.celery.worker`: ``cinejobs worker --celery proj.celery:app``
runs the app's tasks from its own Redis broker (see docs/celery.md).

Celery is imported here, not by ``import cinejobs``.
"""

from __future__ import annotations

from .batching import ProcessBatcher, batcher, close_batchers
from .progress import PROGRESS, progress_of, report_progress
from .rate_limit import GlobalRateLimitTask
from .task import Task
from .unique import UniqueTask

__all__ = [
    "PROGRESS",
    "GlobalRateLimitTask",
    "ProcessBatcher",
    "Task",
    "UniqueTask",
    "batcher",
    "close_batchers",
    "progress_of",
    "report_progress",
]
