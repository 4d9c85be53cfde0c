"""Batching: turn many small writes into bulk writes without losing any.

    from cinejobs.batch import Batcher, PostgresSink

    with Batcher(PostgresSink(url, "movies", key=["tmdb_id"]), max_items=500, max_age=5.0) as b:
        for movie in movies:
            b.add(movie)          # a dict (anything JSON can carry), encoded once here

The C++ core buffers the items and writes them from its own thread at ``max_items``,
``max_bytes`` or ``max_age``, whichever comes first, on :meth:`Batcher.flush` and on
:meth:`Batcher.close`. Items a sink cannot take are retried with backoff; items refused for good
or out of attempts go to the dead letter. Every open batcher is also flushed at interpreter
exit, when an embedded or CLI worker that was running when it was created stops, and on SIGTERM
in a process that installed no SIGTERM handler of its own.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import FrameType, TracebackType
from typing import Any

from . import _core
from .errors import BatcherClosed, BatcherFull

__all__ = [
    "Batcher",
    "BatcherClosed",
    "BatcherFull",
    "ElasticsearchSink",
    "Failed",
    "NullSink",
    "PostgresDeadLetter",
    "PostgresSink",
    "Retry",
]


class Retry:
    """A callable sink's verdict on one item: not written now, try it again later."""

    def __init__(self, reason: str = "retry requested by the sink") -> None:
        self.reason = reason


class Failed:
    """A callable sink's verdict on one item: refused for good; send it to the dead letter."""

    def __init__(self, reason: str = "refused by the sink") -> None:
        self.reason = reason


class PostgresSink:
    """Rows of an existing PostgreSQL table, each item a JSON object whose fields map to the
    columns of the same name (other fields are ignored, missing ones are NULL).

    ``key`` names the columns of a unique index to upsert on (a later item with the same key
    replaces the row); without it, rows are sent by COPY, or by one multi-row INSERT per batch
    with ``copy=False``. Bad rows fail alone (to the dead letter); a lost connection retries the
    batch. Without a key, a batch whose commit was cut off may be written twice on retry.
    """

    def __init__(
        self, url: str, table: str, *, key: str | Sequence[str] | None = None, copy: bool = True
    ) -> None:
        keys = [key] if isinstance(key, str) else list(key or [])
        self.url = url
        self.table = table
        self.key = keys
        self._core = _core.postgres_sink(url, table, keys, copy and not keys)


class ElasticsearchSink:
    """An Elasticsearch index, written through the ``_bulk`` API (one request per batch).

    Per-item results are read: 429s and 5xx are retried, other item errors (a mapping error,
    say) go to the dead letter. With ``id_field``, each document's ``_id`` is taken from that
    field, so a retried document replaces itself instead of being indexed twice.
    """

    def __init__(
        self,
        base_url: str,
        index: str,
        *,
        id_field: str | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.index = index
        header_lines = [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._core = _core.elasticsearch_sink(
            base_url, index, id_field or "", timeout, header_lines
        )


class NullSink:
    """Takes every item and keeps none: for dry runs, and for measuring the batcher itself."""

    def __init__(self) -> None:
        self._core = _core.null_sink()


class PostgresDeadLetter:
    """A PostgreSQL table (created if missing) for items that could not be delivered: item
    jsonb, error text, at timestamptz, attempts int."""

    def __init__(self, url: str, table: str = "cinejobs_dead_letters") -> None:
        self.url = url
        self.table = table
        self._core = _core.postgres_dead_letter(url, table)


# Built once (json.dumps with options builds an encoder per call). NaN and infinities are refused:
# they are not JSON, and no sink could take them.
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode

Sink = PostgresSink | ElasticsearchSink | NullSink | Callable[[list[Any]], Sequence[Any] | None]
DeadLetter = str | os.PathLike[str] | PostgresDeadLetter


def _outcome(verdict: object) -> tuple[int, str]:
    if verdict is None or verdict is True:
        return (0, "")
    if isinstance(verdict, Retry):
        return (1, verdict.reason)
    if isinstance(verdict, Failed):
        return (2, verdict.reason)
    raise TypeError(
        f"a sink's per-item verdict must be None, True, Retry or Failed, not {verdict!r}"
    )


def _callable_sink(
    fn: Callable[[list[Any]], Sequence[Any] | None], decode: bool
) -> _core.SinkCallable:
    def write(items: list[str]) -> list[tuple[int, str]] | None:
        verdicts = fn([json.loads(item) for item in items] if decode else items)
        if verdicts is None:
            return None
        outcomes = [_outcome(v) for v in verdicts]
        if len(outcomes) != len(items):
            raise ValueError(
                f"the sink returned {len(outcomes)} verdicts for {len(items)} items: return "
                "None, or one verdict per item"
            )
        return outcomes

    write.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    return write


def _dead_letter(target: DeadLetter | None) -> _core.DeadLetter | None:
    if target is None:
        return None
    if isinstance(target, PostgresDeadLetter):
        return target._core
    if isinstance(target, str | os.PathLike):
        return _core.jsonl_dead_letter(os.fspath(target))
    raise TypeError(
        "dead_letter must be a JSONL file path or a cinejobs.batch.PostgresDeadLetter, not "
        f"{type(target).__name__}"
    )


class Batcher:
    """Collects items and writes them to ``sink`` in batches; see the module docstring.

    ``sink`` is a callable taking a list of items (decoded from JSON again unless
    ``decode=False``, which passes the JSON texts) and returning None when all were written,
    or one verdict per item: None/True written, :class:`Retry` or :class:`Failed`. Raising
    retries the whole batch. Or a :class:`PostgresSink`, :class:`ElasticsearchSink` or
    :class:`NullSink`.

    ``capacity`` bounds the items held: :meth:`add` waits for room (the GIL released), or raises
    :class:`BatcherFull` with ``block=False`` or when ``timeout`` passes. A write is tried
    ``max_attempts`` times, waiting ``retry_backoff * 2**n`` (at most ``retry_backoff_max``)
    between tries; then the item goes to ``dead_letter`` (a JSONL file path or a
    :class:`PostgresDeadLetter`), or, without one or when that fails too, is kept in memory:
    :meth:`undelivered`. Each such event is counted in :meth:`stats` and logged on stderr.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        max_items: int = 500,
        max_bytes: int = 5 * 1024 * 1024,
        max_age: float = 5.0,
        capacity: int = 10_000,
        max_attempts: int = 5,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 5.0,
        dead_letter: DeadLetter | None = None,
        decode: bool = True,
        name: str = "batcher",
    ) -> None:
        for option, value in (
            ("max_items", max_items),
            ("max_bytes", max_bytes),
            ("capacity", capacity),
            ("max_attempts", max_attempts),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        target: _core.BatchSink | _core.SinkCallable
        if isinstance(sink, PostgresSink | ElasticsearchSink | NullSink):
            target = sink._core
        elif callable(sink):
            target = _callable_sink(sink, decode)
        else:
            raise TypeError(
                f"sink must be a callable, a PostgresSink or an ElasticsearchSink, not {sink!r}"
            )
        self.sink = sink
        self._core = _core.Batcher(
            target,
            max_items=max_items,
            max_bytes=max_bytes,
            max_age=max_age,
            capacity=capacity,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            name=name,
            dead_letter=_dead_letter(dead_letter),
        )
        _lifecycle.opened(self)

    def add(self, item: Any, *, block: bool = True, timeout: float | None = None) -> None:
        """Buffer one item (anything JSON can carry). Waits while the batcher is full, unless
        ``block`` is false; raises :class:`BatcherFull` when no room came in time, and
        :class:`BatcherClosed` after :meth:`close`. A value JSON cannot carry raises TypeError
        (NaN and infinities ValueError) and is not added."""
        self._core.add(_encode(item), block, timeout)

    def add_many(self, items: Iterable[Any], *, timeout: float | None = None) -> None:
        """Add each item in turn (waiting for room as :meth:`add` does)."""
        add = self._core.add
        for item in items:
            add(_encode(item), True, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything added so far; return once each item is delivered, dead-lettered or
        kept undelivered (True), or when ``timeout`` passes first (False)."""
        return self._core.flush(timeout)

    def close(self) -> None:
        """Stop taking items, write everything buffered and stop the flush thread. Safe twice."""
        self._core.close()
        _lifecycle.closed(self)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def stats(self) -> dict[str, int]:
        """Counters: added, delivered, retried, dead_lettered, undelivered, pending, batches."""
        return self._core.stats()

    def undelivered(self) -> list[dict[str, Any]]:
        """Items neither the sink nor the dead letter took: {item (JSON text), error, at
        (epoch ms), attempts}."""
        return self._core.undelivered()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Lifecycle:
    """Closes open batchers when their process or worker ends: at interpreter exit, when a worker
    that was running at a batcher's creation stops, and on SIGTERM (when the process installed no
    handler of its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[Batcher] = weakref.WeakSet()
        self._workers: dict[int, weakref.WeakSet[Batcher]] = {}
        self._sigterm_installed = False
        atexit.register(self.close_all)

    def opened(self, batcher: Batcher) -> None:
        with self._lock:
            self._open.add(batcher)
            for owned in self._workers.values():
                owned.add(batcher)
        self._install_sigterm()

    def closed(self, batcher: Batcher) -> None:
        with self._lock:
            self._open.discard(batcher)

    def worker_started(self, worker: object) -> None:
        with self._lock:
            self._workers[id(worker)] = weakref.WeakSet()

    def worker_stopped(self, worker: object) -> None:
        with self._lock:
            owned = list(self._workers.pop(id(worker), ()))
        for batcher in owned:
            batcher.close()

    def close_all(self) -> None:
        with self._lock:
            batchers = list(self._open)
        for batcher in batchers:
            batcher.close()

    def _install_sigterm(self) -> None:
        # Only the main thread may install handlers, and only where the process has none: a
        # handler of the user's (or the CLI worker's, which stops the worker and so closes its
        # batchers) stays in charge.
        if self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._sigterm_installed = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.close_all()
        # Then end as SIGTERM would have: the default action, so the exit status says so.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._sigterm_installed = False
        os.kill(os.getpid(), signal.SIGTERM)


_lifecycle = _Lifecycle()
