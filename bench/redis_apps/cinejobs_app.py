"""cinejobs tasks for the bench (run by an embedded worker or `cinejobs worker --app
redis_apps.cinejobs_app:app --broker URL`)."""

from __future__ import annotations

import cinejobs

from ._stamp import record_start

app = cinejobs.App()


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.stamp")
def stamp(seq: int) -> None:
    record_start(seq)
