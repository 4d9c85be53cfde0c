"""What the TMDB stand-in itself can serve, so figures measured against it (films/minute of the
enrichment pipeline) are known not to be bounded by the stand-in.

Two parts:
- capacity: C client threads, each on its own kept-alive connection, alternate a search and a
  movie-details request with append_to_response=credits for a fixed time, with no rate limit, at
  several added latencies; requests/s and median answer time.
- rate limit: with the stand-in limiting to N requests per rolling window, a client sending
  back to back (waiting as Retry-After says after a 429) and paced ones (evenly spaced at the
  limit, and at 98% of it) for a few windows: accepted requests/s against the limit, and 429s
  received. The window counts arrival times, so a client paced exactly at the limit gets the
  odd 429 when one request is delayed and the next is not; a small margin avoids them.

A benchmark, not a test: this machine is shared, so read the figures as of one run.

    .venv/bin/python bench/bench_tmdb_standin.py [--seconds S] [--limit N --window S --windows K]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cinejobs.tmdb_standin import TmdbStandin, bundled

KEY = "bench-key"


def request_paths() -> list[str]:
    """Alternating searches and detail lookups over the bundled films."""
    paths = []
    for movie in list(bundled().movies.values())[:100]:
        paths.append(f"/3/search/movie?api_key={KEY}&query={quote(movie['title'])}")
        paths.append(f"/3/movie/{movie['id']}?api_key={KEY}&append_to_response=credits")
    return paths


class Client(threading.Thread):
    """One kept-alive connection sending requests until `stop`: back to back, or one every
    `interval` seconds; after a 429 it waits as Retry-After says."""

    def __init__(
        self, standin: TmdbStandin, paths: list[str], stop: threading.Event, interval: float = 0
    ) -> None:
        super().__init__()
        host, port = standin.url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.paths = paths
        self.stop = stop
        self.interval = interval
        self.statuses: list[int] = []
        self.durations: list[float] = []

    def run(self) -> None:
        n = 0
        start = time.perf_counter()
        while not self.stop.is_set():
            if self.interval:
                due = start + n * self.interval
                if self.stop.wait(max(0.0, due - time.perf_counter())):
                    break
            sent = time.perf_counter()
            self.conn.request("GET", self.paths[n % len(self.paths)])
            response = self.conn.getresponse()
            response.read()
            self.durations.append(time.perf_counter() - sent)
            self.statuses.append(response.status)
            n += 1
            if response.status == 429 and self.stop.wait(float(response.headers["Retry-After"])):
                break
        self.conn.close()


def drive(standin: TmdbStandin, clients: int, seconds: float, interval: float = 0) -> list[Client]:
    stop = threading.Event()
    paths = request_paths()
    threads = [Client(standin, paths[i:] + paths[:i], stop, interval) for i in range(clients)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    return threads


def capacity(seconds: float) -> list[dict[str, Any]]:
    rows = []
    for latency_ms in (0, 20, 100):
        for clients in (1, 4, 16):
            with TmdbStandin(api_key=KEY, read_token=None, latency_ms=latency_ms) as standin:
                threads = drive(standin, clients, seconds)
            statuses = [s for t in threads for s in t.statuses]
            durations = [d for t in threads for d in t.durations]
            assert set(statuses) == {200}, set(statuses)
            rows.append(
                {
                    "latency_ms": latency_ms,
                    "clients": clients,
                    "requests": len(statuses),
                    "requests_per_s": len(statuses) / seconds,
                    "median_ms": statistics.median(durations) * 1000,
                }
            )
            print(f"  capacity: {rows[-1]}", flush=True)
    return rows


def rate_limit(limit: int, window_s: float, windows: int) -> list[dict[str, Any]]:
    rows = []
    for mode, clients, interval in (
        ("back to back, waiting out 429s", 1, 0.0),
        ("paced at the limit, 1 client", 1, window_s / limit),
        ("paced at 98% of the limit, 1 client", 1, window_s / (0.98 * limit)),
    ):
        with TmdbStandin(
            api_key=KEY, read_token=None, rate_limit=limit, rate_window_s=window_s
        ) as standin:
            seconds = windows * window_s
            threads = drive(standin, clients, seconds, interval)
            stats = standin.stats()
        accepted = stats["by_status"].get("200", 0)
        rows.append(
            {
                "mode": mode,
                "limit": f"{limit} per {window_s:g} s",
                "seconds": seconds,
                "accepted_per_s": accepted / seconds,
                "limit_per_s": limit / window_s,
                "rate_limited": stats["rate_limited"],
                "requests": sum(len(t.statuses) for t in threads),
            }
        )
        print(f"  rate limit: {rows[-1]}", flush=True)
    return rows


def write(out: Path, cap: list[dict[str, Any]], limited: list[dict[str, Any]], when: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"TMDB stand-in, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"clients in the same process, {when}"
    )
    lines = [header, "", "| added latency | clients | requests/s | median answer |"]
    lines.append("|---:|---:|---:|---:|")
    for r in cap:
        lines.append(
            f"| {r['latency_ms']} ms | {r['clients']} | {r['requests_per_s']:,.0f} "
            f"| {r['median_ms']:.1f} ms |"
        )
    lines += ["", "| client | limit | accepted/s | limit/s | 429s |", "|---|---|---:|---:|---:|"]
    for r in limited:
        lines.append(
            f"| {r['mode']} | {r['limit']} | {r['accepted_per_s']:.1f} | "
            f"{r['limit_per_s']:.0f} | {r['rate_limited']:,} |"
        )
    table = "\n".join(lines) + "\n"
    (out / "tmdb_standin.md").write_text(table)
    (out / "tmdb_standin.json").write_text(
        json.dumps({"when": when, "capacity": cap, "rate_limit": limited}, indent=1) + "\n"
    )
    print()
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per capacity row")
    parser.add_argument("--limit", type=int, default=40, help="requests per rate-limit window")
    parser.add_argument("--window", type=float, default=10.0, help="rate-limit window, seconds")
    parser.add_argument("--windows", type=int, default=3, help="rate-limit windows per row")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    limited = rate_limit(args.limit, args.window, args.windows)
    write(args.out, capacity(args.seconds), limited, when)


if __name__ == "__main__":
    main()
