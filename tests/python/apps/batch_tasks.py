"""An app whose task feeds a Batcher, for the test that a CLI worker's stop flushes it.

The batcher is opened by the first job (so while the worker runs) and never reaches a limit on
its own; its sink appends each batch's items, one JSON line each, to the file the job names.
The broker comes from the worker's --broker option.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import cinejobs
from cinejobs.batch import Batcher

app = cinejobs.App()
_lock = threading.Lock()
_batcher: Batcher | None = None


def _append_to(path: str) -> Any:
    def write(items: list[Any]) -> None:
        data = "".join(json.dumps(item) + "\n" for item in items).encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    return write


@app.task(name="batch.collect")
def collect(path: str, n: int) -> None:
    global _batcher
    with _lock:
        if _batcher is None:
            _batcher = Batcher(_append_to(path), max_items=10_000, max_age=3600.0)
    _batcher.add({"n": n})
