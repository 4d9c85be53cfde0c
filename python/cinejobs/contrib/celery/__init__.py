"""cinejobs for Celery apps, in two steps a team can take one at a time.

Step 1, this package: what Celery lacks, added to existing tasks without changing how the app
enqueues. ``UniqueTask`` (a task base class) refuses a second run of a task while one with the
same unique key is live, telling the caller the live task's id (the 409 pattern), and
``report_progress`` stores cinejobs' ``{step, fraction, message}`` progress where
``AsyncResult.info`` reads it. Both work under Celery's own worker and under cinejobs'.

Step 2, :mod:`cinejobs.contrib.celery.worker`: ``cinejobs worker --celery proj.celery:app``
runs the app's tasks from its own Redis broker (see docs/celery.md).

Celery is imported here, not by ``import cinejobs``.
"""

from __future__ import annotations

from .progress import PROGRESS, progress_of, report_progress
from .unique import UniqueTask

__all__ = ["PROGRESS", "UniqueTask", "progress_of", "report_progress"]
