"""``cinejobs demo``: an end-to-end run on an embedded SQLite broker, no server needed.

It enqueues a simulated "fetch film metadata" workload over 50 bundled titles (in one bulk
call), an ``async def`` task that fails once and succeeds on its retry, a task that always
fails and ends failed with its error, a scheduled job that is cancelled before it runs, and a
unique-key conflict; runs them on an embedded worker with live progress; and prints what
happened. (A later version replaces the simulation with real TMDB enrichment.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, TextIO

from ._redact import redact
from ._status import StatusLine
from .app import App
from .context import current_job
from .errors import JobFailed, UniqueConflict
from .handle import FINAL_STATES, JobHandle

__all__ = ["FILMS", "QUEUE", "build_app", "run_demo"]

QUEUE = "cinejobs-demo"

FILMS: list[tuple[str, int]] = [
    ("The Godfather", 1972),
    ("Casablanca", 1942),
    ("Seven Samurai", 1954),
    ("Vertigo", 1958),
    ("Tokyo Story", 1953),
    ("Citizen Kane", 1941),
    ("2001: A Space Odyssey", 1968),
    ("Bicycle Thieves", 1948),
    ("Rashomon", 1950),
    ("Singin' in the Rain", 1952),
    ("Lawrence of Arabia", 1962),
    ("Psycho", 1960),
    ("The Seventh Seal", 1957),
    ("8½", 1963),
    ("La Dolce Vita", 1960),
    ("Apocalypse Now", 1979),
    ("Taxi Driver", 1976),
    ("Chinatown", 1974),
    ("Alien", 1979),
    ("Blade Runner", 1982),
    ("Raging Bull", 1980),
    ("Fanny and Alexander", 1982),
    ("Come and See", 1985),
    ("Ran", 1985),
    ("Wings of Desire", 1987),
    ("My Neighbor Totoro", 1988),
    ("Do the Right Thing", 1989),
    ("Goodfellas", 1990),
    ("Three Colours: Red", 1994),
    ("Pulp Fiction", 1994),
    ("Heat", 1995),
    ("Fargo", 1996),
    ("Princess Mononoke", 1997),
    ("Spirited Away", 2001),
    ("In the Mood for Love", 2000),
    ("Amélie", 2001),
    ("City of God", 2002),
    ("Oldboy", 2003),
    ("Pan's Labyrinth", 2006),
    ("There Will Be Blood", 2007),
    ("No Country for Old Men", 2007),
    ("WALL·E", 2008),
    ("A Separation", 2011),
    ("Mad Max: Fury Road", 2015),
    ("Moonlight", 2016),
    ("Get Out", 2017),
    ("Roma", 2018),
    ("Parasite", 2019),
    ("Portrait of a Lady on Fire", 2019),
    ("Everything Everywhere All at Once", 2022),
]

_GENRES = ["Drama", "Crime", "Science Fiction", "Comedy", "Romance", "Thriller", "Animation", "War"]


def _simulated_record(title: str, year: int) -> dict[str, Any]:
    seed = zlib.crc32(f"{title} ({year})".encode())
    return {
        "title": title,
        "year": year,
        "tmdb_id": 100_000 + seed % 900_000,
        "runtime": 80 + seed % 95,
        "genres": sorted({_GENRES[seed % 8], _GENRES[(seed >> 8) % 8]}),
        "rating": round(6.0 + (seed >> 16) % 35 / 10, 1),
    }


def build_app(broker_url: str) -> App:
    """The demo's app: its tasks, on the given broker."""
    app = App(broker_url)

    @app.task(name="demo.fetch_film", queue=QUEUE, max_attempts=3, retry_backoff=0.2)
    def fetch_film(title: str, year: int) -> dict[str, Any]:
        """Simulate fetching a film's metadata: search, details, credits, with progress."""
        job = current_job()
        pause = 0.02 + (zlib.crc32(title.encode()) % 50) / 1000
        for i, step in enumerate(("search", "details", "credits")):
            job.progress(i / 3, step=step, message=f"{title} ({year})")
            time.sleep(pause)  # stands in for an HTTP round trip
        return _simulated_record(title, year)

    @app.task(name="demo.fetch_poster", queue=QUEUE, max_attempts=3, retry_backoff=0.2)
    async def fetch_poster(tmdb_id: int) -> dict[str, Any]:
        """An async task whose first attempt meets a (simulated) flaky image server."""
        job = current_job()
        await asyncio.sleep(0.05)
        if job.attempt == 1:
            raise ConnectionError("image server answered 503 Service Unavailable (simulated)")
        return {"tmdb_id": tmdb_id, "poster": f"/w500/{tmdb_id}.jpg", "attempt": job.attempt}

    @app.task(name="demo.parse_release", queue=QUEUE, max_attempts=2, retry_backoff=0.1)
    def parse_release(release_name: str) -> dict[str, Any]:
        """Always fails: the release name has no year to parse."""
        raise ValueError(f"cannot parse release name {release_name!r}: no year found")

    @app.task(name="demo.refresh_catalogue", queue=QUEUE)
    def refresh_catalogue(run: str) -> str:
        """A job that must not run twice at once: enqueued with a unique key."""
        job = current_job()
        for i in range(4):
            job.progress(i / 4, step="refresh")
            time.sleep(0.05)
        return f"catalogue refreshed ({run})"

    return app


def run_demo(
    broker_url: str | None = None, *, concurrency: int | None = None, out: TextIO | None = None
) -> int:
    """Run the demo and print what happened; returns the exit status."""
    stream = out if out is not None else sys.stdout
    tmpdir: str | None = None
    if broker_url is None:
        tmpdir = tempfile.mkdtemp(prefix="cinejobs-demo-")
        broker_url = "sqlite:///" + str(Path(tmpdir) / "demo.db")
    try:
        return _run(broker_url, concurrency, stream)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _say(stream: TextIO, text: str = "") -> None:
    stream.write(redact(text) + "\n")
    stream.flush()


def _run(broker_url: str, concurrency: int | None, stream: TextIO) -> int:
    app = build_app(broker_url).connect()
    tasks = app.tasks
    run = uuid.uuid4().hex[:8]
    _say(stream, f"cinejobs demo: broker {broker_url}")
    t0 = time.monotonic()

    # 50 films in one bulk enqueue (one transaction).
    t_bulk = time.monotonic()
    films = app.enqueue_many([("demo.fetch_film", [title, year]) for title, year in FILMS])
    bulk_ms = (time.monotonic() - t_bulk) * 1000
    poster = tasks["demo.fetch_poster"].delay(_simulated_record(*FILMS[0])["tmdb_id"])
    broken = tasks["demo.parse_release"].delay("Some.Movie.REPACK.1080p.BluRay.x264")
    later = tasks["demo.fetch_film"].enqueue(["The Third Man", 1949], delay=3600)
    later_state = later.cancel()
    refresh_key = f"catalogue-refresh-{run}"
    refresh = tasks["demo.refresh_catalogue"].enqueue([run], unique_key=refresh_key)
    conflict: UniqueConflict | None = None
    try:
        tasks["demo.refresh_catalogue"].enqueue([run], unique_key=refresh_key)
    except UniqueConflict as exc:
        conflict = exc
    handles: list[JobHandle] = [*films, poster, broken, refresh]
    _say(
        stream,
        f"enqueued {len(handles) + 1} jobs ({len(films)} films in one bulk call of "
        f"{bulk_ms:.1f} ms); running them on an embedded worker",
    )

    status = StatusLine(stream, prefix="  ", plain_interval=1.0)
    deadline = time.monotonic() + 45
    with app.worker([QUEUE], concurrency, lease=10.0, poll_interval=0.02) as worker:
        _say(stream, f"the worker runs {worker.concurrency} jobs at once")
        while True:
            states = [h.status() for h in handles]
            done = sum(s in FINAL_STATES for s in states)
            status.update(worker.stats(), extra=f"{done}/{len(handles)} done")
            if done == len(handles):
                break
            if time.monotonic() > deadline:
                status.finish()
                _say(stream, "cinejobs demo: jobs did not finish within 45 s; giving up")
                return 1
            time.sleep(0.1)
        stats = worker.stats()
    status.finish()
    elapsed = time.monotonic() - t0

    counts: dict[str, int] = {}
    for handle in [*handles, later]:
        state = handle.status()
        counts[state] = counts.get(state, 0) + 1
    _say(stream)
    _say(stream, f"finished in {elapsed:.2f} s")
    _say(stream, "jobs by state: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    _say(
        stream,
        f"worker: {stats['succeeded']} succeeded, {stats['retried']} retried, "
        f"{stats['failed']} failed",
    )
    _say(stream, "a few results (simulated metadata: no TMDB request is made yet):")
    for handle in films[:4]:
        r = handle.result(timeout=1)
        _say(
            stream,
            f"  {r['title']} ({r['year']}): tmdb {r['tmdb_id']}, {r['runtime']} min, "
            f"{'/'.join(r['genres'])}, rated {r['rating']}",
        )
    info = poster.info()
    first_error = info["error"]
    retried = f" after {first_error['type']}: {first_error['message']}" if first_error else ""
    _say(
        stream,
        f"retried: demo.fetch_poster succeeded on attempt {info['attempt']}{retried} -> "
        f"{poster.result(timeout=1)}",
    )
    try:
        broken.result(timeout=1)
        _say(stream, "unexpected: demo.parse_release succeeded")
        return 1
    except JobFailed as exc:
        _say(
            stream,
            f"failed: demo.parse_release after {broken.info()['attempt']} attempts: "
            f"{exc.error_type}: {exc.error_message}",
        )
    _say(
        stream,
        f"cancelled: a job scheduled an hour ahead was cancelled ({later_state}) and never ran",
    )
    if conflict is not None:
        _say(
            stream,
            f"unique key: a second enqueue with key {conflict.unique_key!r} was refused; "
            f"live job {conflict.existing_id} held it -> {refresh.result(timeout=1)!r}",
        )
    ok = (
        counts.get("succeeded", 0) == len(films) + 2
        and counts.get("failed", 0) == 1
        and counts.get("cancelled", 0) == 1
        and conflict is not None
    )
    _say(stream, "demo ok" if ok else "demo finished with unexpected outcomes (see above)")
    return 0 if ok else 1


# ---- the main demo: TMDB enrichment of a bundled list ----

DEMO_LIST = "demo_films.csv"  # in cinejobs.tmdb_standin's data: 50 films, some misspelt


def run_tmdb_demo(
    broker_url: str | None = None, *, concurrency: int | None = None, out: TextIO | None = None
) -> int:
    """Enrich the bundled list of 50 films: from TMDB with credentials, else from the local
    stand-in. Returns the exit status."""
    from importlib import resources

    from .enrich import EnrichSettings, enrich, tmdb_standin
    from .films import read_film_list

    stream = out if out is not None else sys.stdout
    tmpdir: str | None = None
    if broker_url is None:
        tmpdir = tempfile.mkdtemp(prefix="cinejobs-demo-")
        broker_url = "sqlite:///" + str(Path(tmpdir) / "demo.db")
    try:
        data = resources.files("cinejobs.tmdb_standin") / "data" / DEMO_LIST
        films = read_film_list(DEMO_LIST, text=data.read_text(encoding="utf-8"))
        _say(stream, f"cinejobs demo: enriching {len(films.films)} films, broker {broker_url}")
        real = bool(os.environ.get("TMDB_API_KEY") or os.environ.get("TMDB_READ_TOKEN"))
        if real:
            _say(stream, f"TMDB: {os.environ.get('TMDB_BASE_URL') or 'the public API'}")
            session = enrich(
                films, EnrichSettings(broker_url, concurrency), source=DEMO_LIST, out=stream
            )
        else:
            _say(
                stream,
                "No TMDB credentials (TMDB_API_KEY or TMDB_READ_TOKEN) are set, so TMDB is served "
                "by a local stand-in built from bundled fixtures: same API, same answers' shapes, "
                "not TMDB's data. Set TMDB_API_KEY to use the real API.",
            )
            # The stand-in enforces TMDB's current allowance (about 50 requests a second); the
            # pipeline keeps to 40 a second, shared by every worker on the broker.
            with tmdb_standin(latency_ms=(20.0, 60.0), rate_limit=50, rate_window_s=1.0):
                settings = EnrichSettings(broker_url, concurrency, rate="40/s", timeout=120)
                session = enrich(films, settings, source=DEMO_LIST, out=stream)
        ok = session["finished"] and session["failed"] == 0
        _say(stream, "demo ok" if ok else "demo finished with failures")
        return 0 if ok else 1
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
