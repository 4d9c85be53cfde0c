"""A process with a half-full Batcher, for the SIGTERM test: it writes `count` rows to a
PostgreSQL table through a Batcher whose limits are never reached (max_items and max_age far
above what it adds), says "ready" on stdout, then idles until a signal ends it. It installs no
SIGTERM handler: cinejobs.batch must flush the buffer on SIGTERM and then end as SIGTERM would.

Usage: python -m apps.batch_producer URL TABLE COUNT
"""

from __future__ import annotations

import sys
import time

from cinejobs.batch import Batcher, PostgresSink


def main() -> None:
    url, table, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    batcher = Batcher(PostgresSink(url, table), max_items=10 * count, max_age=3600.0)
    for n in range(count):
        batcher.add({"id": n, "title": f"movie {n}"})
    print("ready", batcher.stats()["pending"], flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
