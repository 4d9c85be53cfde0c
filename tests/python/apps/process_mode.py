"""The app the process-mode tests run under `cinejobs worker --processes N`.

Tasks report the pid of the child that ran them (in their result, and for `record` in a line
"<job id> <attempt> <pid>" appended to a file), so a test can tell children apart. The broker
comes from the worker's --broker option.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

import cinejobs

app = cinejobs.App()

# What `hog` allocates stays here, as a leak would: the child's resident memory stays up.
_hoard: list[bytes] = []


@app.task(name="pm.record", max_attempts=3, retry_backoff=0.05)
def record(logdir: str) -> dict[str, Any]:
    job = cinejobs.current_job()
    line = f"{job.id} {job.attempt} {os.getpid()}\n".encode()
    fd = os.open(Path(logdir) / "ran.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return {"pid": os.getpid()}


@app.task(name="pm.pid", max_attempts=3, retry_backoff=0.05)
def pid(seconds: float = 0.0) -> dict[str, Any]:
    if seconds:
        time.sleep(seconds)
    return {"pid": os.getpid()}


@app.task(name="pm.forever", hard_timeout=2, max_attempts=1)
def forever() -> None:
    """Never returns and never yields: only killing its process ends it."""
    n = 0
    while True:
        n += 1


@app.task(name="pm.segfault", max_attempts=1)
def segfault() -> None:
    ctypes.string_at(0)


@app.task(name="pm.exit", max_attempts=2, retry_backoff=0.05)
def exit_now(code: int) -> None:
    os._exit(code)


@app.task(name="pm.hog", max_attempts=1)
def hog(megabytes: int) -> dict[str, Any]:
    """Allocate and touch `megabytes` MB, and keep them (a leak)."""
    _hoard.append(b"x" * (megabytes << 20))
    return {"pid": os.getpid()}


@app.task(name="pm.sleep", max_attempts=3)
def sleep(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"pid": os.getpid()}
