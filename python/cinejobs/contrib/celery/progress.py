"""Progress of Celery tasks in cinejobs' ``{step, fraction, message}`` shape.

A running task reports with :func:`report_progress`; the caller reads it back with
:func:`progress_of` or Celery's own ``AsyncResult.info`` (state ``PROGRESS``), under Celery's
worker and under ``cinejobs worker --celery`` alike.
"""

from __future__ import annotations

from typing import Any

from celery import current_task
from celery.result import AsyncResult

from ...context import _current

__all__ = ["PROGRESS", "progress_of", "report_progress"]

# The custom Celery state a task is in while it reports progress.
PROGRESS = "PROGRESS"


def report_progress(fraction: float, step: str = "", message: str = "") -> None:
    """Report the running task's progress as ``{step, fraction, message}`` (fraction clamped to
    0..1): under a cinejobs worker through the job (``cinejobs.current_job().progress``), under
    a Celery worker with ``update_state``; either way the task reads as state PROGRESS with that
    meta in ``AsyncResult.info``. Raises RuntimeError outside a running task."""
    fraction = min(1.0, max(0.0, float(fraction)))
    job = _current.get()
    if job is not None:
        job.progress(fraction, step, message)
        return
    task = current_task
    if task is None or task.request.called_directly:
        raise RuntimeError("report_progress() was called outside a running Celery task")
    task.update_state(state=PROGRESS, meta={"step": step, "fraction": fraction, "message": message})


def progress_of(result: AsyncResult) -> dict[str, Any] | None:
    """The last ``{step, fraction, message}`` a task reported, while it is in state PROGRESS;
    None otherwise."""
    info = result.info
    if result.state != PROGRESS or not isinstance(info, dict):
        return None
    return {
        "step": info.get("step", ""),
        "fraction": info.get("fraction", 0.0),
        "message": info.get("message", ""),
    }
