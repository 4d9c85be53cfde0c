"""RQ job functions for the bench (`rq worker --worker-class rq.worker.SimpleWorker`)."""

from __future__ import annotations

from ._stamp import record_start


def noop() -> None:
    return None


def stamp(seq: int) -> None:
    record_start(seq)
