"""Celery's own worker against cinejobs' drop-in worker on the same Celery app.

For each worker: N `echo.delay(i)` calls (an ordinary Celery producer) fill the app's queue on
one redis-server, then the worker starts and drains it; the rate is N over the time from the
first message taken to the last result stored (worker start-up is not counted). Both workers
store every result in the Redis result backend. Prints a Markdown table and saves
bench/results/celery.{md,json}.

    python bench/bench_celery.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "python"))

from celery_workers import CeleryAppWorker  # noqa: E402

from redis_server import RedisServer  # noqa: E402

QUEUE = "celery"
# (worker kind, concurrency): Celery's prefork pool with two processes (the machine has two
# cores) and cinejobs' default thread pool.
SYSTEMS = [("celery", 2), ("cinejobs", 8)]
# Counts the results stored so far, in the server (one small reply per poll).
COUNT_RESULTS = "return #redis.call('KEYS', 'celery-task-meta-*')"


def drain(
    server: RedisServer, kind: str, concurrency: int, n: int, logdir: Path
) -> dict[str, object]:
    import redis

    url = server.url(db=0)
    client = redis.Redis.from_url(url)
    client.flushdb()
    os.environ["BENCH_REDIS_URL"] = url
    from celery_bench_app.app import echo

    started = time.perf_counter()
    for i in range(n):
        last = echo.delay(i)
    enqueue_seconds = time.perf_counter() - started
    assert client.llen(QUEUE) == n
    worker = CeleryAppWorker(
        kind, "celery_bench_app.app:app", [QUEUE], logdir / f"{kind}.log", cwd=HERE,
        concurrency=concurrency, env={"BENCH_REDIS_URL": url}, loglevel="WARNING",
    )  # fmt: skip
    try:
        while client.llen(QUEUE) == n:
            if not worker.alive():
                raise RuntimeError(f"{kind} worker died:\n{worker.output()}")
            time.sleep(0.001)
        first = time.perf_counter()
        deadline = first + 600
        while True:
            stored = int(client.eval(COUNT_RESULTS, 0))
            if stored >= n:
                break
            if time.perf_counter() > deadline or not worker.alive():
                raise RuntimeError(f"{kind} worker stalled at {stored}/{n}:\n{worker.output()}")
            time.sleep(0.1)  # KEYS costs the server ~2 ms: poll rarely
        seconds = time.perf_counter() - first
    finally:
        worker.stop()
    assert last.get(timeout=30) == n - 1
    return {
        "worker": kind,
        "concurrency": concurrency,
        "messages": n,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(n / seconds),
        "enqueue_per_s": round(n / enqueue_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    rows = []
    with RedisServer(extra_args=("--appendonly", "no")) as server:
        logdir = Path(server.directory)
        for kind, concurrency in SYSTEMS:
            rows.append(drain(server, kind, concurrency, args.messages, logdir))
    celery_rate = rows[0]["tasks_per_s"]
    assert isinstance(celery_rate, int)
    lines = [
        f"Celery app, {args.messages} `echo.delay(i)` messages drained from one redis-server "
        f"({platform.machine()}, {os.cpu_count()} cores), results stored:",
        "",
        "| worker | concurrency | tasks/s | vs celery |",
        "|---|---|---|---|",
    ]
    for row in rows:
        rate = row["tasks_per_s"]
        assert isinstance(rate, int)
        name = (
            "celery worker --pool prefork"
            if row["worker"] == "celery"
            else "cinejobs worker --celery"
        )
        lines.append(f"| {name} | {row['concurrency']} | {rate} | {rate / celery_rate:.1f}x |")
    table = "\n".join(lines)
    print(table)
    (results_dir / "celery.md").write_text(table + "\n")
    (results_dir / "celery.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
