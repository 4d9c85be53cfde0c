"""Throughput of the Batcher: items/s from Python producers into each kind of sink.

Adds N small movie records (100,000 by default) through ``cinejobs.Batcher`` (max_items 500)
and times from the first add until close() returned, i.e. until every item was written:
- into the C++ null sink (the batcher's own cost plus Python's json.dumps and add per item),
  from one producer thread and from four;
- into a Python callable that does nothing (adds the GIL hand-off to the flush thread);
- into a PostgreSQL table by COPY, by multi-row INSERT, and by upsert on the primary key, on a
  PostgreSQL this script starts (scripts/postgres_server.py) with fsync off.
Writes bench/results/batcher.md and batcher.json.

A benchmark, not a test: this machine is shared, so read the figures as of one run and compare
rows of the same run with each other.

    .venv/bin/python bench/bench_batcher.py [--items N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from cinejobs.batch import Batcher, NullSink, PostgresSink

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from postgres_server import PostgresServer

MAX_ITEMS = 500


def movie(n: int) -> dict[str, Any]:
    return {"id": n, "title": f"Movie number {n}", "year": 1900 + n % 125, "rating": 7.5}


def run(make_batcher: Callable[[], Batcher], n: int, threads: int = 1) -> float:
    """Items/s from the first add until close() returned."""
    batcher = make_batcher()
    per_thread = n // threads

    def produce(t: int) -> None:
        add = batcher.add
        for i in range(t * per_thread, (t + 1) * per_thread):
            add(movie(i))

    start = time.perf_counter()
    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    batcher.close()
    seconds = time.perf_counter() - start
    stats = batcher.stats()
    if stats["delivered"] != per_thread * threads:
        raise SystemExit(f"the batcher delivered {stats['delivered']} items: {stats}")
    return per_thread * threads / seconds


def fresh_table(url: str) -> str:
    table = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id integer PRIMARY KEY, title text, year integer, "
            "rating double precision)"
        )
    return table


def table_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    n = options.items
    rows: list[tuple[str, float]] = []

    def record(name: str, items_per_second: float) -> None:
        rows.append((name, items_per_second))
        print(f"{name}: {items_per_second:,.0f} items/s", flush=True)

    record(
        "C++ null sink, 1 producer thread",
        run(lambda: Batcher(NullSink(), max_items=MAX_ITEMS), n),
    )
    record(
        "C++ null sink, 4 producer threads",
        run(lambda: Batcher(NullSink(), max_items=MAX_ITEMS), n, threads=4),
    )
    record(
        "Python no-op callable sink, 1 producer thread",
        run(lambda: Batcher(lambda items: None, max_items=MAX_ITEMS, decode=False), n),
    )
    with PostgresServer() as server:
        url = server.url()
        for name, kwargs in (
            ("PostgreSQL table, COPY", {"copy": True}),
            ("PostgreSQL table, multi-row INSERT", {"copy": False}),
            ("PostgreSQL table, upsert on the primary key", {"key": "id"}),
        ):
            table = fresh_table(url)
            record(
                f"{name}, 1 producer thread",
                run(
                    lambda t=table, k=kwargs: Batcher(
                        PostgresSink(url, t, **k), max_items=MAX_ITEMS
                    ),
                    n,
                ),
            )
            if table_rows(url, table) != n:
                raise SystemExit(f"{table} holds {table_rows(url, table)} rows, not {n}")
        with psycopg.connect(url) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": version,
        "items": n,
        "max_items": MAX_ITEMS,
        "when": when,
    }
    title = (
        f"Batcher, {n:,} items per row (max_items {MAX_ITEMS}), {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, PostgreSQL {version} (fsync off), {when}"
    )
    lines = [title, "", "| sink | items/s |", "|---|---:|"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in rows]
    table_md = "\n".join(lines) + "\n"
    print()
    print(table_md)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "batcher.md").write_text(table_md)
    results = {"machine": machine, "items_per_second": dict(rows)}
    (options.out / "batcher.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
