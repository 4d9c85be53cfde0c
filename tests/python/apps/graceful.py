"""The app of the graceful-stop tests (test_graceful_stop.py).

`graceful.stubborn` ignores its stop token and records its own start and end as lines
"<event> <job id> <attempt> <pid> <epoch seconds>" in <logdir>/events.log (O_APPEND, one write
per line, so lines of several processes never mix): the test proves from these, not from the
broker, that no two handlers ever ran the job at once. `graceful.note` adds an item to a batcher
opened at import, before any worker starts, so only the interpreter's exit (atexit) flushes it.
The broker comes from the worker's --broker option.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import cinejobs
from cinejobs.batch import Batcher

app = cinejobs.App()


def _event(logdir: str, event: str) -> None:
    job = cinejobs.current_job()
    line = f"{event} {job.id} {job.attempt} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(Path(logdir) / "events.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(name="graceful.stubborn", max_attempts=3)
def stubborn(logdir: str, seconds: float) -> str:
    _event(logdir, "start")
    time.sleep(seconds)  # does not look at cancel_requested
    _event(logdir, "end")
    return "done"


def _append(items: list[Any]) -> None:
    path = os.environ["GRACEFUL_NOTES"]
    with open(path, "a") as out:
        out.write("".join(json.dumps(item) + "\n" for item in items))


# Opened at import: owned by no worker, so only atexit closes (and flushes) it.
notes = (
    Batcher(_append, max_items=10_000, max_age=3600.0) if os.environ.get("GRACEFUL_NOTES") else None
)


@app.task(name="graceful.note")
def note(text: str) -> None:
    assert notes is not None, "set GRACEFUL_NOTES for the worker"
    notes.add(text)
