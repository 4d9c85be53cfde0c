"""``cinejobs enrich FILE``: the whole TMDB pipeline in one command.

It reads the list, checks the TMDB credentials once (a refused key is one clear message, not
one per film), ingests the films as a session, runs an embedded worker on the ``tmdb`` queue
with a live progress bar until every film has a final state, and prints a summary table. With
``json_out`` it writes one JSON line per film. ``cinejobs demo`` runs it on a bundled list,
against a local TMDB stand-in when no credentials are set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._redact import redact
from .app import App
from .errors import CinejobsError
from .films import QUEUE, FilmList, FilmStore, start_session, summary_line

__all__ = ["EnrichSettings", "enrich", "tmdb_standin"]


class EnrichError(CinejobsError):
    """Something the user can fix: no credentials, a refused key, an unreadable list."""


@dataclass
class EnrichSettings:
    broker: str
    concurrency: int | None = None  # worker threads; None: the core's default
    store: str | None = None  # film store URL; default: the broker's database
    rate: str | None = None  # TMDB rate limit; default: TMDB_RATE_LIMIT, else 40/10s
    json_out: str | None = None
    timeout: float | None = None  # give up waiting after this many seconds


def _credentials_set() -> bool:
    return bool(os.environ.get("TMDB_API_KEY") or os.environ.get("TMDB_READ_TOKEN"))


def _check_credentials() -> None:
    """One request (TMDB's configuration) so a refused key stops here, once."""
    if not _credentials_set():
        raise EnrichError(
            "no TMDB credentials: set TMDB_API_KEY (a v3 API key) or TMDB_READ_TOKEN (a v4 read "
            "access token), or run `cinejobs demo`, which uses a local stand-in"
        )
    from .errors import TmdbAuthError
    from .tmdb import Client

    try:
        Client(rate_limit=None).configuration()
    except TmdbAuthError as exc:
        raise EnrichError(f"TMDB refused the credentials: {exc}") from None


@contextmanager
def tmdb_standin(**settings: Any) -> Iterator[dict[str, str]]:
    """A local TMDB stand-in for this process (settings as TmdbStandin's): its environment
    (TMDB_BASE_URL and a key) is set while the block runs and put back after."""
    from .tmdb_standin import TmdbStandin

    saved = {k: os.environ.get(k) for k in ("TMDB_BASE_URL", "TMDB_API_KEY", "TMDB_READ_TOKEN")}
    with TmdbStandin(**settings) as standin:
        env = standin.environ()
        env.pop("TMDB_READ_TOKEN", None)  # one method is enough; the v3 key is the common one
        os.environ.update(env)
        os.environ.pop("TMDB_READ_TOKEN", None)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "█" * filled + "░" * (width - filled)


class _Progress:
    """The live progress line: redrawn on a terminal, a plain line every few seconds when
    piped."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_plain = 0.0

    def line(self, s: dict[str, Any]) -> str:
        done = s["total"] - s["pending"]
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f" · eta {s['pending'] / rate:,.0f} s" if rate > 0 and s["pending"] else ""
        return (
            f"[{_bar(done, s['total'])}] {done}/{s['total']} · enriched {s['enriched']} · "
            f"not found {s['not_found']} · failed {s['failed']} · {rate * 60:,.0f} films/min{eta}"
        )

    def update(self, s: dict[str, Any]) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(s) + "\033[K")
            self.stream.flush()
        elif time.monotonic() - self.last_plain >= 2.0:
            self.last_plain = time.monotonic()
            self.stream.write(self.line(s) + "\n")
            self.stream.flush()

    def finish(self, s: dict[str, Any]) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(s) + "\033[K\n")
        else:
            self.stream.write(self.line(s) + "\n")
        self.stream.flush()


def _title_of(film: dict[str, Any]) -> str:
    record = film.get("record") or {}
    if record.get("title"):
        year = f" ({record['year']})" if record.get("year") else ""
        return f"{record['title']}{year}"
    return "-"


def _print_summary(
    stream: TextIO, session: dict[str, Any], films: list[dict[str, Any]], elapsed: float
) -> None:
    total = session["total"]
    stream.write(
        f"\n{total} films in {elapsed:.1f} s ({total / elapsed * 60 if elapsed else 0:,.0f} "
        f"films/min): {session['enriched']} enriched, {session['not_found']} not found, "
        f"{session['failed']} failed\n\n"
    )
    rows = [("#", "input", "TMDB match", "id", "conf", "status")]
    for film in films:
        given = film["title"] + (f" ({film['year']})" if film.get("year") else "")
        confidence = film.get("confidence")
        rows.append(
            (
                str(film["position"] + 1),
                given[:38],
                _title_of(film)[:38],
                str(film.get("tmdb_id") or "-"),
                f"{confidence:.2f}" if confidence is not None else "-",
                film["status"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        stream.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
        if n == 0:
            stream.write("  ".join("-" * w for w in widths) + "\n")
    for film in films:
        if film["status"] == "failed":
            stream.write(redact(f"failed: {film['title']}: {film.get('error')}") + "\n")
    stream.flush()


def enrich(
    films: FilmList, settings: EnrichSettings, *, source: str, out: TextIO | None = None
) -> dict[str, Any]:
    """Enrich a film list end to end; returns the finished session's counts."""
    stream = out if out is not None else sys.stdout
    _check_credentials()
    app = App(settings.broker).connect()
    store_url = settings.store or app.broker.url
    store = FilmStore(store_url)
    started = time.monotonic()
    session_id = start_session(app, films.films, source=source, store=settings.store)
    stream.write(
        f"session {session_id}: {len(films.films)} films from {source} ({films.format})"
        + (f", {len(films.skipped)} lines skipped" if films.skipped else "")
    )
    for line, text, why in films.skipped:
        stream.write(f"  skipped line {line}: {text!r}: {why}\n")
    stream.flush()
    tmdb: dict[str, str] = {"film_store": store_url}
    if settings.rate is not None:
        tmdb["rate"] = settings.rate
    progress = _Progress(stream)
    deadline = None if settings.timeout is None else started + settings.timeout
    with app.worker([QUEUE], settings.concurrency, tmdb=tmdb) as worker:
        stream.write(f"enriching on {worker.concurrency} threads\n")
        stream.flush()
        while True:
            session = store.session(session_id)
            assert session is not None  # created above
            progress.update(session)
            if session["finished"]:
                break
            if deadline is not None and time.monotonic() > deadline:
                progress.finish(session)
                raise EnrichError(
                    f"session {session_id} not finished after {settings.timeout:.0f} s: "
                    f"{session['pending']} films pending (run a worker on queue {QUEUE!r} to "
                    "finish it)"
                )
            time.sleep(0.2)
    elapsed = time.monotonic() - started
    progress.finish(session)
    rows = store.films(session_id)
    _print_summary(stream, session, rows, elapsed)
    if settings.json_out:
        with open(settings.json_out, "w", encoding="utf-8") as fh:
            for film in rows:
                fh.write(json.dumps(summary_line(film), ensure_ascii=False) + "\n")
        stream.write(f"wrote {len(rows)} lines to {settings.json_out}\n")
    return {**session, "elapsed_s": elapsed}


def read_list(path: str) -> FilmList:
    from .films import read_film_list

    try:
        return read_film_list(path)
    except FileNotFoundError:
        raise EnrichError(f"no such file: {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnrichError(str(exc)) from None


def source_name(path: str) -> str:
    return Path(path).name
