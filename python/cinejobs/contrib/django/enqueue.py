"""Enqueue that follows the surrounding Django transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ... import postgres
from ...app import Task
from ...handle import JobHandle
from .project import app


def _same_database(using: str) -> bool:
    """True when the broker is the PostgreSQL database of Django connection ``using``."""
    from django.db import connections

    from .conf import database_broker_url

    parts = urlsplit(app.broker_url)
    if parts.scheme not in ("postgres", "postgresql"):
        return False
    schema = parse_qs(parts.query).get("schema", ["cinejobs"])[0]
    return database_broker_url(connections[using].settings_dict, schema) == app.broker_url


def enqueue_on_commit(
    task: Task[..., Any] | str,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    using: str = "default",
    **options: Any,
) -> str | JobHandle | None:
    """Enqueue ``task(*args, **kwargs)`` so that it exists only if the current transaction of
    connection ``using`` commits.

    - When the broker is that same PostgreSQL database, the job is inserted inside the
      transaction itself (``cinejobs.postgres.enqueue``): it commits or rolls back with your
      rows, and the job id is returned at once.
    - Otherwise, inside ``transaction.atomic()``, the enqueue runs from
      ``transaction.on_commit`` (nothing is enqueued on rollback) and None is returned; outside
      any transaction (autocommit) it runs at once and returns the JobHandle.

    Options as for :meth:`cinejobs.Task.enqueue` (delay, run_at, priority, unique_key, queue,
    max_attempts, timeout).
    """
    from django.db import connections, transaction

    if _same_database(using):
        schema = parse_qs(urlsplit(app.broker_url).query).get("schema", ["cinejobs"])[0]
        return postgres.enqueue(
            connections[using], task, *args, kwargs=kwargs, schema=schema, **options
        )
    if connections[using].in_atomic_block:
        transaction.on_commit(
            lambda: app.enqueue(task, args, kwargs, **options), using=using, robust=False
        )
        return None
    return app.enqueue(task, args, kwargs, **options)
