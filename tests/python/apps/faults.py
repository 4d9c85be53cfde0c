"""The app the fault tests run in real `cinejobs worker` processes.

Every task records what happened by appending one line, "<job id> <attempt> <pid>", to files
in the directory it is given: started.log when it starts, completed.log when it completes.
Appends use O_APPEND with one write() per line, so lines from several processes never mix.
The broker comes from the worker's --broker option.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cinejobs

app = cinejobs.App()


def _record(logdir: str, name: str) -> None:
    job = cinejobs.current_job()
    line = f"{job.id} {job.attempt} {os.getpid()}\n".encode()
    fd = os.open(Path(logdir) / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(name="faults.work", max_attempts=5, retry_backoff=0.05)
def work(logdir: str, seconds: float) -> dict[str, Any]:
    """Take `seconds` (sleeping, as I/O-bound work does), then record completion."""
    _record(logdir, "started.log")
    time.sleep(seconds)
    _record(logdir, "completed.log")
    return {"pid": os.getpid()}


@app.task(name="faults.spin", max_attempts=5, retry_backoff=0.05)
def spin(logdir: str, seconds: float) -> dict[str, Any]:
    """Hold the GIL in a pure-Python CPU loop for `seconds`: no progress, no sleep, no I/O."""
    _record(logdir, "started.log")
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        for i in range(1000):
            n += i * i % 7
    elapsed = time.monotonic() - start
    _record(logdir, "completed.log")
    return {"pid": os.getpid(), "elapsed": elapsed, "n": n}


@app.task(name="faults.gate", max_attempts=5, retry_backoff=0.05)
def gate(logdir: str, gate: str, limit: float = 60.0) -> dict[str, Any]:
    """Run until the file `gate` exists (at most `limit` seconds): a long job whose end the
    test decides."""
    _record(logdir, "started.log")
    deadline = time.monotonic() + limit
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.01)
    _record(logdir, "completed.log")
    return {"pid": os.getpid()}
