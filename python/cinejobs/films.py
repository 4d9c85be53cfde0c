"""Film lists and enrichment sessions: the ingest pass of the TMDB pipeline.

A user's list becomes a *session*: every film is stored ``pending`` in the broker's database
(searchable at once) and gets one ``tmdb.enrich`` job on the ``tmdb`` queue, run by the native
handler in any cinejobs worker (Python or ``cinejobs-worker``). Each film ends ``enriched``,
``not_found`` or ``failed``, once; the session is finished when every film is.

    films = read_film_list("letterboxd.csv")
    session = start_session(app, films.films, source="letterboxd.csv")
    store = FilmStore(app.broker.url)
    store.session(session)   # {"total": 200, "enriched": 57, "pending": 140, ...}

Accepted lists: a Letterboxd export (``Date,Name,Year,Letterboxd URI,Rating``), a CSV with a
``title`` column (and optionally ``year``, ``original_title``), or one release name per line
(``Inception.2010.1080p.BluRay.x264-SPARKS``; samples, subtitle packs and software are skipped).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core
from .tmdb import parse_release_name

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "ENRICH_TASK",
    "QUEUE",
    "SYNC_TASK",
    "FilmList",
    "FilmStore",
    "read_film_list",
    "resume_session",
    "start_session",
    "summary_line",
]

ENRICH_TASK = _core.TMDB_ENRICH_TASK
SYNC_TASK = _core.TMDB_SYNC_TASK
QUEUE = _core.TMDB_QUEUE
FINAL_STATUSES = frozenset({"enriched", "not_found", "failed"})


@dataclass
class FilmList:
    """What a list held: the films to enrich, and the lines skipped with the reason."""

    films: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)
    format: str = ""  # "letterboxd", "csv" or "release names"


def _year(text: str | None, line: int) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1870 <= int(text) <= 2100:
        raise ValueError(f"line {line}: year {text!r} is not a year")
    return int(text)


def _read_csv(text: str, title_column: str, year_column: str | None, fmt: str) -> FilmList:
    out = FilmList(format=fmt)
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        line = reader.line_num
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        title = values.get(title_column, "")
        if not title:
            out.skipped.append((line, ",".join(v or "" for v in row.values()), "no title"))
            continue
        film: dict[str, Any] = {
            "input": json.dumps({k: v for k, v in row.items() if k}, ensure_ascii=False),
            "title": title,
            "year": _year(values.get(year_column or ""), line),
        }
        if values.get("original_title"):
            film["original_title"] = values["original_title"]
        out.films.append(film)
    return out


def _read_release_names(text: str) -> FilmList:
    out = FilmList(format="release names")
    for line, raw in enumerate(text.splitlines(), start=1):
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        info = parse_release_name(name)
        if not info["enrichable"]:
            out.skipped.append((line, name, info["reason"] or "not a film or an episode"))
            continue
        film: dict[str, Any] = {"input": name, "title": info["title"], "year": info["year"]}
        if info["kind"] == "episode":
            film.update(kind="episode", season=info["season"], episode=info["episode"])
        out.films.append(film)
    return out


def read_film_list(source: str | Path, *, text: str | None = None) -> FilmList:
    """Read a film list from a file (or from ``text``, with ``source`` naming it).

    Raises ValueError naming the line for a malformed year, and when nothing in it is a film.
    """
    if text is None:
        text = Path(source).read_text(encoding="utf-8-sig")
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    header = [h.strip().lower() for h in next(csv.reader([first]))] if first else []
    if {"name", "year", "letterboxd uri"} <= set(header):
        films = _read_csv(text, "name", "year", "letterboxd")
    elif "title" in header:
        films = _read_csv(text, "title", "year" if "year" in header else None, "csv")
    else:
        films = _read_release_names(text)
    if not films.films:
        raise ValueError(
            f"{source}: no films found (expected a Letterboxd export, a CSV with a title "
            "column, or one release name per line)"
        )
    return films


def _enrich_job(session_id: str, position: int, max_attempts: int) -> dict[str, Any]:
    return {
        "task": ENRICH_TASK,
        "queue": QUEUE,
        "kwargs": {"session": session_id, "position": position},
        "unique_key": _core.enrich_unique_key(session_id, position),
        "max_attempts": max_attempts,
    }


def start_session(
    app: App,
    films: Sequence[dict[str, Any]],
    *,
    source: str,
    store: str | None = None,
    max_attempts: int = 5,
) -> str:
    """Ingest ``films`` as a new session and enqueue one ``tmdb.enrich`` job per film.

    ``store`` is the film store's URL (default: the app's broker; a Redis broker needs a
    SQLite or PostgreSQL store, which workers must be given as ``CINEJOBS_FILM_STORE`` too).
    Returns the session id. Should the process die between the two steps, the films are
    stored and :func:`resume_session` enqueues them.
    """
    film_store = _core.FilmStore(store or app.broker.url)
    session_id = film_store.create_session(source, list(films))
    app.enqueue_many(_enrich_job(session_id, i, max_attempts) for i in range(len(films)))
    return session_id


def resume_session(
    app: App, session_id: str, *, store: str | None = None, max_attempts: int = 5
) -> int:
    """Enqueue a job for every film of the session still pending (a film whose job is live
    keeps it: the unique key holds). Returns how many films were pending."""
    pending = _core.FilmStore(store or app.broker.url).films(session_id, "pending")
    app.enqueue_many(_enrich_job(session_id, f["position"], max_attempts) for f in pending)
    return len(pending)


class FilmStore:
    """Read access to sessions and films, records parsed (``record`` is a dict or None)."""

    def __init__(self, url: str) -> None:
        self._core = _core.FilmStore(url)

    @property
    def kind(self) -> str:
        return self._core.kind

    def session(self, session_id: str) -> dict[str, Any] | None:
        """Counts of the session: total, pending, enriched, not_found, failed, synced, and
        finished (every film final)."""
        return self._core.session(session_id)

    def sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._core.sessions(limit)

    def films(self, session_id: str, status: str | None = None) -> list[dict[str, Any]]:
        return [_parsed(f) for f in self._core.films(session_id, status)]

    def film(self, session_id: str, position: int) -> dict[str, Any] | None:
        found = self._core.film(session_id, position)
        return _parsed(found) if found is not None else None

    def search(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Films of every session whose title contains ``text``, enriched or not yet."""
        return [_parsed(f) for f in self._core.search(text, limit)]


def _parsed(film: dict[str, Any]) -> dict[str, Any]:
    record = film.get("record")
    return {**film, "record": json.loads(record) if record else None}


def summary_line(film: dict[str, Any]) -> dict[str, Any]:
    """One line of ``cinejobs enrich --json-out``: what the user gave and what TMDB said."""
    record = film.get("record") or {}
    return {
        "input": film["input"],
        "status": film["status"],
        "tmdb_id": film.get("tmdb_id"),
        "title": record.get("title"),
        "year": record.get("year"),
        "confidence": round(film["confidence"], 3) if film.get("confidence") is not None else None,
        "genres": record.get("genres", []),
        "directors": record.get("directors", []),
        "cast": record.get("cast", []),
        "runtime": record.get("runtime"),
        "poster_url": record.get("poster_url"),
        "query": film.get("query"),
        "error": film.get("error"),
    }
