"""UniqueTask: one live run per unique key, refused at ``.delay()`` with the live task's id.

The lock is a Redis key in the app's broker, taken with ``SET NX`` before the message is
published and released by the task that holds it (compare-and-delete) when it succeeds or fails
for good; retries keep it, since they keep the task id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from celery import Task
from celery.utils import uuid

from ...errors import UniqueConflict
from ._options import callable_option

__all__ = ["UniqueTask"]

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
        make_key = callable_option(self, "unique_key")
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
            # A retry (or a rate-limit snooze) republishes under its own id: the lock is its own.
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
