"""TMDB enrichment throughput against the local TMDB stand-in: films per minute at several
upstream latencies and rate limits, and films per second when every answer is cached.

Each run ingests a session of films from tests/fixtures/films_letterboxd.csv into a fresh
SQLite broker and enriches it on an embedded worker (8 threads, the native tmdb.enrich
handler), the stand-in enforcing the same limit the pipeline keeps to. A rate-limited run is
also given as a share of its rate-bound maximum: the requests the limit allows in the run's
time. The cached run enriches the same films a second time, with no request to the stand-in.

Writes bench/results/tmdb.md, tmdb.json and tmdb.png, and prints the table. A benchmark, not a
test: figures are of one run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LIST = ROOT / "tests" / "fixtures" / "films_letterboxd.csv"

import cinejobs  # noqa: E402
from cinejobs.films import QUEUE, FilmStore, read_film_list, start_session  # noqa: E402
from cinejobs.tmdb_standin import TmdbStandin  # noqa: E402

# (latency ms, rate or None, films): the films of a run keep a 40/10s run near half a minute.
RUNS: list[tuple[float, str | None, int]] = [
    (10, "40/10s", 60),
    (100, "40/10s", 60),
    (10, "40/s", 200),
    (100, "40/s", 200),
    (10, None, 200),
    (50, None, 200),
    (150, None, 200),
]


def _rate_per_s(rate: str) -> float:
    count, period = rate.split("/")
    seconds = {"s": 1.0, "10s": 10.0}[period]
    return int(count) / seconds


def _limit_settings(rate: str | None) -> dict[str, Any]:
    if rate is None:
        return {"rate_limit": 0}
    count, period = rate.split("/")
    return {"rate_limit": int(count), "rate_window_s": {"s": 1.0, "10s": 10.0}[period]}


def enrich_once(
    tmp: Path, films: list[dict[str, Any]], latency: float, rate: str | None, cache: bool
) -> dict[str, Any]:
    with TmdbStandin(latency_ms=latency, **_limit_settings(rate)) as standin:
        env = standin.environ()
        os.environ["TMDB_BASE_URL"] = env["TMDB_BASE_URL"]
        os.environ["TMDB_API_KEY"] = env["TMDB_API_KEY"]
        url = f"sqlite:///{tmp}/bench-{time.monotonic_ns()}.db"
        app = cinejobs.App(url)
        store = FilmStore(url)
        tmdb = {"rate": rate or "", "cache": "" if cache else "none"}
        out: dict[str, Any] = {}
        with app.worker([QUEUE], 8, tmdb=tmdb):
            if cache:  # warm the cache with the same films first
                warm = start_session(app, films, source="warm")
                while not store.session(warm)["finished"]:  # type: ignore[index]
                    time.sleep(0.05)
                standin.reset()
            session = start_session(app, films, source="bench")
            started = time.monotonic()
            while not store.session(session)["finished"]:  # type: ignore[index]
                time.sleep(0.01)
            elapsed = time.monotonic() - started
        result = store.session(session)
        stats = standin.stats()
        out.update(
            latency_ms=latency,
            rate=rate or "none",
            cached=cache,
            films=len(films),
            elapsed_s=elapsed,
            films_per_min=len(films) / elapsed * 60,
            requests=stats["requests"],
            rate_limited=stats["rate_limited"],
            enriched=result["enriched"],  # type: ignore[index]
            failed=result["failed"],  # type: ignore[index]
        )
        if rate is not None:
            allowed = 1 + elapsed * _rate_per_s(rate)
            out["share_of_rate_bound"] = stats["requests"] / allowed
        return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (make bench-deps installs it)")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for rate in ("40/10s", "40/s", "none"):
        points = [
            (r["latency_ms"], r["films_per_min"])
            for r in rows
            if r["rate"] == rate and not r["cached"]
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=f"limit {rate}")
    ax.set_xlabel("stand-in latency per request (ms)")
    ax.set_ylabel("films per minute")
    ax.set_yscale("log")
    ax.set_title("TMDB enrichment, 8 worker threads, SQLite broker")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--quick", action="store_true", help="fewer films per run")
    options = parser.parse_args()
    all_films = read_film_list(LIST).films
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for latency, rate, count in RUNS:
            count = min(count, 30) if options.quick else count
            rows.append(enrich_once(Path(tmp), all_films[:count], latency, rate, cache=False))
            print(rows[-1], flush=True)
        rows.append(enrich_once(Path(tmp), all_films, 50, None, cache=True))
        print(rows[-1], flush=True)

    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    header = (
        f"TMDB enrichment against the local stand-in, 8 threads, SQLite broker, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {stamp}"
    )
    lines = [
        header,
        "",
        "| latency | limit | cached | films | seconds | films/min | films/s | requests/film "
        "| share of rate-bound max | 429s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = f"{r['share_of_rate_bound']:.1%}" if "share_of_rate_bound" in r else "-"
        lines.append(
            f"| {r['latency_ms']:g} ms | {r['rate']} | {'yes' if r['cached'] else 'no'} | "
            f"{r['films']} | {r['elapsed_s']:.2f} | {r['films_per_min']:,.0f} | "
            f"{r['films_per_min'] / 60:,.1f} | {r['requests'] / r['films']:.2f} | {share} | "
            f"{r['rate_limited']} |"
        )
    text = "\n".join(lines)
    print("\n" + text)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "tmdb.md").write_text(text + "\n")
    (options.out / "tmdb.json").write_text(
        json.dumps({"header": header, "rows": rows}, indent=2) + "\n"
    )
    plot(rows, options.out / "tmdb.png")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
