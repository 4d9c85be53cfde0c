"""Rate limit decisions per second on each store: local, SQLite, Redis, PostgreSQL.

Each phase times RateLimiter.try_acquire, the round trip every rate-limited job pays once per
delivery (the worker asks before its handler runs), from 1 and from 8 threads: on an open limit
(1,000,000/s, burst 1000: decisions that admit, and write, unless the load outruns even that)
and on a spent one (1/h: every decision refuses, which writes nothing except on PostgreSQL).
Servers are started on loopback in temporary directories, as the tests do.

Writes bench/results/rate_limit.md and rate_limit.json, and prints the table. A benchmark, not a
test: figures are of one run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "scripts"))

import cinejobs  # noqa: E402
from postgres_server import PostgresServer  # noqa: E402
from redis_server import RedisServer  # noqa: E402

THREADS = (1, 8)


@contextmanager
def store_urls(workdir: Path) -> Iterator[dict[str, str]]:
    """The URL of every store kind, servers started for the duration."""
    with ExitStack() as stack:
        redis = RedisServer().start()
        stack.callback(redis.close)
        postgres = stack.enter_context(PostgresServer())
        cinejobs.App(f"{postgres.url()}?schema=bench_rl&migrate=true").connect()
        yield {
            "local": "local",
            "sqlite": f"sqlite:///{workdir}/rate_limit.db",
            "redis": redis.url(prefix="bench-rl:"),
            "postgres": f"{postgres.url()}?schema=bench_rl",
        }


def decisions_per_second(
    limiter: cinejobs.RateLimiter, threads: int, seconds: float
) -> tuple[float, float]:
    """try_acquire calls per second from `threads` threads over about `seconds`, and the
    fraction of them that admitted."""
    counts = [0] * threads
    admitted = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        start.wait()
        n = yes = 0
        while not stop.is_set():
            yes += limiter.try_acquire()
            n += 1
        counts[i] = n
        admitted[i] = yes

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    return sum(counts) / elapsed, sum(admitted) / max(1, sum(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    options = parser.parse_args()

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp, store_urls(Path(tmp)) as urls:
        for kind, url in urls.items():
            admit = cinejobs.RateLimiter("admit", "1000000/s", burst=1000, broker=url)
            refuse = cinejobs.RateLimiter("refuse", "1/h", broker=url)
            refuse.try_acquire()
            for threads in THREADS:
                open_rate, open_admitted = decisions_per_second(admit, threads, options.seconds)
                spent_rate, _ = decisions_per_second(refuse, threads, options.seconds)
                rows.append(
                    {
                        "store": kind,
                        "threads": threads,
                        "open_per_s": open_rate,
                        "open_admitted": open_admitted,
                        "spent_per_s": spent_rate,
                    }
                )
                print(rows[-1], flush=True)

    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    header = (
        f"Rate limit decisions (try_acquire) per second, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {stamp}"
    )
    lines = [
        header,
        "",
        "| store | threads | open limit: decisions/s | of them admitted | spent limit: "
        "decisions/s (all refused) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['store']} | {row['threads']} | {row['open_per_s']:,.0f} | "
            f"{row['open_admitted']:.0%} | {row['spent_per_s']:,.0f} |"
        )
    text = "\n".join(lines)
    print("\n" + text)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "rate_limit.md").write_text(text + "\n")
    (options.out / "rate_limit.json").write_text(
        json.dumps({"header": header, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
