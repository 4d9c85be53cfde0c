"""Process-wide batchers for a Celery app: declared once, one per worker process, flushed when
the process's worker stops.

    @batcher(app)
    def movies() -> Batcher:
        return Batcher(PostgresSink(DB, "movies", key=["tmdb_id"]), max_items=500)

    @app.task
    def enrich(movie_id):
        movies.add(fetch(movie_id))     # this process's Batcher, made on first use

The function builds the process's :class:`cinejobs.Batcher`; it is called on first use in each
process, never at import, because Celery's prefork pool forks its worker processes from the
process that imported the app, and a batcher's flush thread and its sink's connections do not
survive a fork. A graceful stop writes out what each process holds: Celery's
``worker_process_shutdown`` (each pool process, as it exits) and ``worker_shutdown`` (the main
process, for the solo and thread pools) close the batchers; ``cinejobs worker --celery`` closes
them when it stops; and every open Batcher is closed at interpreter exit in any case.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from celery import signals

from ...batch import Batcher
from ...errors import ConfigError

__all__ = ["ProcessBatcher", "batcher", "close_batchers"]

# Every ProcessBatcher of every app in this process, for the shutdown signals.
_declared: list[ProcessBatcher] = []
_declared_lock = threading.Lock()


class ProcessBatcher:
    """One :class:`cinejobs.Batcher` per process, built by ``factory`` on first use.

    ``add``, ``add_many`` and ``flush`` are the Batcher's own; :meth:`get` returns it. After
    :meth:`close` (a worker stopped), the next use in the same process builds a new one, so an
    embedded worker can be started again; a forked child never uses its parent's.
    """

    def __init__(self, app: Any, name: str, factory: Callable[[], Batcher]) -> None:
        if not callable(factory):
            raise TypeError(f"batcher {name!r}: factory must be a callable returning a Batcher")
        self.app = app
        self.name = name
        self.factory = factory
        self._lock = threading.Lock()
        self._pid = 0
        self._batcher: Batcher | None = None
        # A forked child's copy of its parent's Batcher: kept, never used nor closed. Its flush
        # thread exists only in the parent (which writes those items out), and dropping the last
        # reference here would run its destructor, which would wait for that thread.
        self._inherited: list[Batcher] = []

    def get(self) -> Batcher:
        """This process's Batcher, built now if it has none (or its last one was closed)."""
        with self._lock:
            current = self._batcher
            if current is not None and self._pid != os.getpid():
                self._inherited.append(current)
                self._batcher = None
            elif current is not None and not current.closed:
                return current
            made = self.factory()
            if not isinstance(made, Batcher):
                raise TypeError(
                    f"batcher {self.name!r}: its factory returned {type(made).__qualname__}, "
                    "not a cinejobs.Batcher"
                )
            self._batcher, self._pid = made, os.getpid()
            return made

    def add(self, item: Any, *, block: bool = True, timeout: float | None = None) -> None:
        """Buffer one item in this process's Batcher (see :meth:`cinejobs.Batcher.add`)."""
        self.get().add(item, block=block, timeout=timeout)

    def add_many(self, items: Iterable[Any], *, timeout: float | None = None) -> None:
        self.get().add_many(items, timeout=timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Write out what this process holds; True when every item is settled (or there is no
        Batcher in this process yet)."""
        current = self._own()
        return True if current is None else current.flush(timeout)

    def close(self) -> None:
        """Write out and close this process's Batcher, if it has one. Safe twice."""
        current = self._own()
        if current is not None:
            current.close()

    def _own(self) -> Batcher | None:
        with self._lock:
            return self._batcher if self._pid == os.getpid() else None

    def __repr__(self) -> str:
        return f"<ProcessBatcher {self.name!r} of {getattr(self.app, 'main', None)!r}>"


def batcher(app: Any, name: str | None = None) -> Callable[[Callable[[], Batcher]], ProcessBatcher]:
    """Declare a process-wide batcher of ``app``: decorate a function that builds the Batcher.
    ``name`` (default: the function's name) must be unique in the app; ``Task.batcher(name)``
    finds it from a task."""

    def declare(factory: Callable[[], Batcher]) -> ProcessBatcher:
        label = name or getattr(factory, "__name__", "")
        if not label or label == "<lambda>":
            raise ConfigError("batcher(app) needs a name= for a factory without one")
        registry: dict[str, ProcessBatcher] | None = getattr(app, "_cinejobs_batchers", None)
        if registry is None:
            registry = app._cinejobs_batchers = {}
        if label in registry:
            raise ConfigError(
                f"the Celery app {app.main!r} already has a batcher named {label!r}: declare "
                "each batcher once (in the module that defines the app or its tasks)"
            )
        handle = ProcessBatcher(app, label, factory)
        registry[label] = handle
        with _declared_lock:
            _declared.append(handle)
        return handle

    return declare


def batcher_of(app: Any, name: str) -> ProcessBatcher:
    """The batcher ``name`` declared for ``app``; ConfigError naming those there are."""
    registry: dict[str, ProcessBatcher] = getattr(app, "_cinejobs_batchers", None) or {}
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise ConfigError(
            f"the Celery app {app.main!r} has no batcher named {name!r} (declared: {known}); "
            "declare it with @cinejobs.contrib.celery.batcher(app)"
        ) from None


def close_batchers(app: Any = None) -> None:
    """Write out and close this process's batchers of ``app`` (of every app when None)."""
    with _declared_lock:
        handles = [h for h in _declared if app is None or h.app is app]
    for handle in handles:
        handle.close()


def _on_worker_stop(**_: Any) -> None:
    close_batchers()


# A prefork pool process exits without running atexit handlers: this signal is its last word.
signals.worker_process_shutdown.connect(_on_worker_stop)
signals.worker_shutdown.connect(_on_worker_stop)
