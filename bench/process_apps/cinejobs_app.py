"""cinejobs tasks for bench_processes.py (`cinejobs worker --app process_apps.cinejobs_app:app
--broker URL [--processes N]`)."""

from __future__ import annotations

import cinejobs

from .workload import spin as _spin

app = cinejobs.App()


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.spin")
def spin(n: int) -> None:
    _spin(n)
