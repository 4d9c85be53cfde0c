"""Transactional enqueue on PostgreSQL: the job commits or rolls back with your data.

``cinejobs.postgres.enqueue(conn, task, *args, **options)`` writes a job through your own
psycopg (v3) connection or cursor, or a Django connection, inside the transaction you have open:
the job exists if and only if that transaction commits, and idle workers are woken when it does.
The INSERT itself comes from the C++ core (the same statement the broker uses), which also
validates the job exactly as ``Task.delay()`` would.

    with psycopg.connect(dsn) as conn:            # one transaction
        conn.execute("INSERT INTO films ...")
        cinejobs.postgres.enqueue(conn, enrich_film, film_id)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from . import _core
from .app import App, Task
from .errors import UniqueConflict

__all__ = ["DEFAULT_SCHEMA", "enqueue"]

DEFAULT_SCHEMA = "cinejobs"


class _Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def fetchone(self) -> Any: ...


def _schema_of(app: App | None) -> str:
    if app is None:
        return DEFAULT_SCHEMA
    parts = urlsplit(app.broker_url)
    if parts.scheme not in ("postgres", "postgresql"):
        return DEFAULT_SCHEMA
    return parse_qs(parts.query).get("schema", [DEFAULT_SCHEMA])[0]


def _run(conn_or_cursor: Any, sql: str, params: list[Any]) -> Any:
    """Execute on a cursor, or on a connection through a cursor of its own (psycopg and Django
    connections both have ``cursor()``), and return the one row."""
    if hasattr(conn_or_cursor, "fetchone"):
        cursor: _Cursor = conn_or_cursor
        cursor.execute(sql, params)
        return cursor.fetchone()
    with conn_or_cursor.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def enqueue(
    conn_or_cursor: Any,
    task: Task[..., Any] | str,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    schema: str | None = None,
    delay: float | None = None,
    run_at: _dt.datetime | float | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
    queue: str | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
) -> str:
    """Enqueue ``task(*args, **kwargs)`` inside the caller's open transaction; return the job id.

    ``task`` is a Task (its defaults and, for a PostgreSQL app, its schema apply) or a task
    name. ``schema`` overrides the schema (default ``cinejobs``, or the app's ``?schema=``).
    Raises UniqueConflict (with ``existing_id``) when a live job holds the unique key,
    TypeError for arguments JSON cannot carry, InvalidPayload for a refused job.
    """
    known = task if isinstance(task, Task) else None
    name = known.name if known is not None else task
    if not isinstance(name, str) or not name:
        raise TypeError(f"a task name must be a non-empty string, got {task!r}")
    fields = App._job_fields(
        name,
        known,
        list(args),
        kwargs,
        delay=delay,
        run_at=run_at,
        priority=priority,
        unique_key=unique_key,
        queue=queue,
        max_attempts=max_attempts,
        timeout=timeout,
    )
    sql, params = _core.postgres_enqueue_statement(
        schema or _schema_of(known.app if known is not None else None), *fields
    )
    row = _run(conn_or_cursor, sql, list(params))
    if row is None:
        # The key's holder committed after this transaction's snapshot: the key is taken.
        raise UniqueConflict(
            f"task {name!r}: unique key {fields[7]!r} is held by a job committed meanwhile",
            fields[7] or "",
            "",
        )
    job_id, created = str(row[0]), bool(row[1])
    if not created:
        raise UniqueConflict(
            f"task {name!r}: unique key {fields[7]!r} is held by live job {job_id}",
            fields[7] or "",
            job_id,
        )
    return job_id
