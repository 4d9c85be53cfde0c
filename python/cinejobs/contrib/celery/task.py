"""Task: the one Celery task base class of cinejobs.contrib.celery.

    @app.task(bind=True, base=Task, unique_key=lambda movie_id: f"movie:{movie_id}",
              global_rate_limit="40/10s", rate_limit_burst=4)
    def enrich(self, movie_id): ...

It is :class:`UniqueTask` and :class:`GlobalRateLimitTask` in one (each option is off until
given), with the task-side handles: :meth:`Task.report_progress` and :meth:`Task.batcher`.
"""

from __future__ import annotations

from .batching import ProcessBatcher, batcher_of
from .progress import report_progress
from .rate_limit import GlobalRateLimitTask
from .unique import UniqueTask

__all__ = ["Task"]


class Task(UniqueTask, GlobalRateLimitTask):
    """A Celery task base with cinejobs' unique lock (``unique_key``, ``unique_ttl``), global
    rate limit (``global_rate_limit``, ``rate_limit_burst``, ``rate_limit_key``,
    ``rate_limit_store``), progress and batchers; see the two bases for each option."""

    abstract = True

    def report_progress(self, fraction: float, step: str = "", message: str = "") -> None:
        """Report this running task's progress; see :func:`report_progress`."""
        report_progress(fraction, step, message)

    def batcher(self, name: str) -> ProcessBatcher:
        """The app's batcher ``name`` (declared with ``@batcher(app)``), for this process."""
        return batcher_of(self.app, name)
