"""The app of the job log tests: tasks that succeed and a task that always fails.

The broker comes from the worker's --broker option.
"""

from __future__ import annotations

import cinejobs

app = cinejobs.App()


@app.task(name="joblogs.add")
def add(x: int, y: int) -> int:
    return x + y


def check_the_value(value: object) -> None:
    """Raises: its name must show in the failure's traceback."""
    raise ValueError(f"value {value!r} is not acceptable")


@app.task(name="joblogs.broken", max_attempts=2, retry_backoff=0.05)
def broken(value: object) -> None:
    check_the_value(value)
