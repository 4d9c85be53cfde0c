"""Throughput of the embedded SQLite broker with no-op jobs.

Enqueues and processes N no-op jobs (100,000 by default) and prints jobs/s for:
single enqueue (``task.delay()`` per job), bulk enqueue (``app.enqueue_many`` in chunks), and
processing by an embedded worker, for a Python handler at two concurrencies and for the native
C++ no-op handler as the engine's own ceiling. Each phase gets a fresh database file so they do
not disturb each other. Writes bench/results/sqlite.md and sqlite.json.

A benchmark, not a test: this machine is shared, so read the figures as of one run and compare
rows of the same run with each other.

    .venv/bin/python bench/bench_sqlite.py [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cinejobs

BULK_CHUNK = 10_000


def fresh_app(directory: Path, name: str) -> tuple[cinejobs.App, Any]:
    app = cinejobs.App(f"sqlite:///{directory / name}.db")

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    return app, noop


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_single_enqueue(directory: Path, n: int) -> float:
    _, noop = fresh_app(directory, "single")

    def run() -> None:
        for _ in range(n):
            noop.delay()

    return rate(n, timed(run))


def bulk_enqueue(app: cinejobs.App, task: str, n: int) -> float:
    def run() -> None:
        for start in range(0, n, BULK_CHUNK):
            count = min(BULK_CHUNK, n - start)
            app.enqueue_many([(task, (), {})] * count)

    return rate(n, timed(run))


def bench_processing(directory: Path, n: int, task: str, concurrency: int) -> tuple[float, float]:
    app, _ = fresh_app(directory, f"process-{task}-{concurrency}")
    enqueue_rate = bulk_enqueue(app, task, n)
    with app.worker(queues=["default"], concurrency=concurrency) as worker:
        start = time.perf_counter()
        while worker.stats()["succeeded"] < n:
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    return enqueue_rate, rate(n, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per phase")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    n = options.jobs

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="cinejobs-bench-") as tmp:
        directory = Path(tmp)
        rows.append(("enqueue, single (`task.delay()`)", bench_single_enqueue(directory, n)))
        bulk, py8 = bench_processing(directory, n, "bench.noop", 8)
        rows.append((f"enqueue, bulk (`app.enqueue_many`, {BULK_CHUNK:,} per call)", bulk))
        rows.append(("process, Python no-op handler, concurrency 8", py8))
        _, py32 = bench_processing(directory, n, "bench.noop", 32)
        rows.append(("process, Python no-op handler, concurrency 32", py32))
        _, native8 = bench_processing(directory, n, "cinejobs.noop", 8)
        rows.append(("process, native C++ no-op handler, concurrency 8", native8))

    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cinejobs": cinejobs.__version__,
        "jobs": n,
    }
    lines = [
        f"SQLite broker, {n:,} no-op jobs per phase, {machine['cpus']} CPUs, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}, {machine['date']}",
        "",
        "| phase | jobs/s |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in rows),
    ]
    table = "\n".join(lines)
    print(table)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "sqlite.md").write_text(table + "\n")
    results: dict[str, Any] = {"machine": machine, "jobs_per_second": dict(rows)}
    (options.out / "sqlite.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
