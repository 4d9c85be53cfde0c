"""cinejobs for Celery apps, in two steps a team can take one at a time.

Step 1, this module: what Celery lacks, added to existing tasks without changing how the app
enqueues. ``UniqueTask`` (a task base class) refuses a second run of a task while one with the
same unique key is live, telling the caller the live task's id (the 409 pattern), and
``report_progress`` stores cinejobs' ``{step, fraction, message}`` progress where
``AsyncResult.info`` reads it. Both work under Celery's own worker and under cinejobs'.

Step 2, :mod:`cinejobs.contrib.celery.worker`: ``cinejobs worker --celery proj.celery:app``
runs the app's tasks from its own Redis broker (see docs/celery.md).

Celery is imported here, not by ``import cinejobs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import redis
from celery import Task, current_task
from celery.result import AsyncResult
from celery.utils import uuid

from ...context import _current
from ...errors import UniqueConflict

__all__ = ["PROGRESS", "UniqueTask", "progress_of", "report_progress"]

# The custom Celery state a task is in while it reports progress.
PROGRESS = "PROGRESS"

# Releases a unique lock only for the task that holds it (a lock that expired and was taken by
# a newer task stays with that task).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class UniqueTask(Task):  # type: ignore[misc]  # Celery has no type information
    """A Celery task base that allows one live run per unique key.

    Use it as ``@app.task(base=UniqueTask, unique_key=lambda movie_id: f"movie:{movie_id}")``.
    ``unique_key`` receives the task's arguments and returns the key, or None for no lock.
    ``.delay()`` / ``.apply_async()`` take the lock (in the app's Redis broker, under
    ``cinejobs:celery:unique:<task>:<key>``) before publishing, and raise
    :class:`cinejobs.errors.UniqueConflict` whose ``existing_id`` names the live task when it is
    held. The lock is released when the task succeeds or fails for good (not between retries,
    which keep the task id), and expires after ``unique_ttl`` seconds in any case, so a task
    lost with its worker does not hold its key forever.
    """

    abstract = True
    unique_key: Callable[..., str | None] | None = None
    unique_ttl: float = 3600.0

    def _lock_name(self, args: Any, kwargs: Any) -> str | None:
        # Celery makes decorator options class attributes, so a plain function would bind to the
        # task: read it unbound.
        make_key = inspect.getattr_static(self, "unique_key")
        if isinstance(make_key, staticmethod):
            make_key = make_key.__func__
        if make_key is None:
            return None
        key = make_key(*(args or ()), **(kwargs or {}))
        return None if key is None else f"cinejobs:celery:unique:{self.name}:{key}"

    def _locks(self) -> redis.Redis:
        client: redis.Redis | None = getattr(self.app, "_cinejobs_unique_redis", None)
        if client is None:
            client = redis.Redis.from_url(self.app.conf.broker_url)
            self.app._cinejobs_unique_redis = client
        return client

    def apply_async(
        self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any
    ) -> Any:
        lock = self._lock_name(args, kwargs)
        if lock is None:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        task_id = task_id or uuid()
        client = self._locks()
        ttl = max(1, round(self.unique_ttl))
        if not client.set(lock, task_id, nx=True, ex=ttl):
            holder = client.get(lock)
            existing = holder.decode() if isinstance(holder, bytes) else str(holder)
            # A retry republishes under its own id: the lock is already its own.
            if existing != task_id:
                key = lock.removeprefix(f"cinejobs:celery:unique:{self.name}:")
                raise UniqueConflict(
                    f"task {self.name} with unique key {key!r} is already live as task {existing}",
                    key,
                    existing,
                )
        try:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        except BaseException:
            client.eval(_RELEASE, 1, lock, task_id)
            raise

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        lock = self._lock_name(args, kwargs)
        if lock is not None:
            self._locks().eval(_RELEASE, 1, lock, task_id)
        super().after_return(status, retval, task_id, args, kwargs, einfo)


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
