"""Speed of release-name parsing and title matching, called from Python.

Parses every name of tests/fixtures/release_names.jsonl over and over, normalises their titles,
and ranks a 20-result TMDB-shaped candidate list, each for about two seconds, and prints the
calls per second. The figures include the binding's conversions (a dict per parsed name), so
they are what a Python caller gets; the C++ calls alone are faster. Writes
bench/results/release_names.md and release_names.json.

    .venv/bin/python bench/bench_release_names.py [--seconds S] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cinejobs
from cinejobs import tmdb

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "release_names.jsonl"


def calls_per_second(batch: Callable[[], int], seconds: float) -> float:
    """Runs batch() (which returns how many calls it made) until `seconds` have passed."""
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        calls += batch()
    return calls / elapsed


def candidates(names: list[str]) -> list[dict[str, Any]]:
    # Twenty results shaped like TMDB's search/movie answer, with titles from the fixture.
    return [
        {
            "id": i,
            "title": tmdb.parse_release_name(name)["title"],
            "release_date": f"{1990 + i}-01-01",
            "popularity": float(i),
        }
        for i, name in enumerate(names[:20])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()

    with FIXTURE.open(encoding="utf-8") as f:
        names = [json.loads(line)["name"] for line in f if line.strip()]
    titles = [tmdb.parse_release_name(n)["title"] for n in names]
    results = candidates(names)

    def parse_all() -> int:
        for name in names:
            tmdb.parse_release_name(name)
        return len(names)

    def normalize_all() -> int:
        for title in titles:
            tmdb.normalize_title(title)
        return len(titles)

    def rank_some() -> int:
        for title in titles[:50]:
            tmdb.rank_candidates(title, results, year=2010)
        return 50

    rows = [
        ("parse_release_name, names/s", calls_per_second(parse_all, options.seconds)),
        ("normalize_title, titles/s", calls_per_second(normalize_all, options.seconds)),
        (
            "rank_candidates over 20 results, rankings/s",
            calls_per_second(rank_some, options.seconds),
        ),
    ]
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cinejobs": cinejobs.__version__,
        "names": len(names),
    }
    table = "\n".join(
        [
            f"Release names and matching from Python, {len(names)} fixture names, "
            f"{machine['cpus']} CPUs, Python {machine['python']}, {machine['date']}",
            "",
            "| operation | per second |",
            "|---|---:|",
            *(f"| {name} | {value:,.0f} |" for name, value in rows),
        ]
    )
    print(table)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "release_names.md").write_text(table + "\n")
    report = {"machine": machine, "per_second": dict(rows)}
    (options.out / "release_names.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
