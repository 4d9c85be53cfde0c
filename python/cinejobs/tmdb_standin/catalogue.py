"""The stand-in's films and shows: the bundled TMDB-shaped records, and search over them the way
TMDB's v3 search endpoints behave.

Search matches words, ignoring case, accents and punctuation, against a record's title, original
title and alternative titles: every word of the query must be a word of one of them, and the last
query word may be the start of a word (TMDB completes it). Scripts written without spaces
(Japanese, Chinese) match as substrings. Results are ordered by popularity, highest first.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# Fields of a movie record that are sub-resources (/3/movie/{id}/<name>, append_to_response),
# not part of the details object.
MOVIE_PARTS = ("alternative_titles", "credits", "external_ids", "keywords", "release_dates")
TV_PARTS = ("credits", "external_ids", "keywords")

# TMDB's "Movie List Result" and "TV List Result" objects, in TMDB's field order.
MOVIE_RESULT_FIELDS = (
    "adult", "backdrop_path", "genre_ids", "id", "original_language", "original_title",
    "overview", "popularity", "poster_path", "release_date", "title", "video", "vote_average",
    "vote_count",
)  # fmt: skip
TV_RESULT_FIELDS = (
    "adult", "backdrop_path", "genre_ids", "id", "origin_country", "original_language",
    "original_name", "overview", "popularity", "poster_path", "first_air_date", "name",
    "vote_average", "vote_count",
)  # fmt: skip

_NOT_WORD = re.compile(r"[^\w]+")
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def normalise(text: str) -> str:
    """Lower case, accents removed, punctuation turned into spaces: 'Amélie' -> 'amelie',
    'Face/Off' -> 'face off', 'WALL·E' -> 'wall e'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NOT_WORD.sub(" ", plain.replace("_", " ")).split())


@dataclass(frozen=True)
class _Entry:
    record: dict[str, Any]
    names: tuple[tuple[str, ...], ...]  # each searchable title as its words
    joined: tuple[str, ...]  # the same titles without spaces, for unspaced scripts
    years: frozenset[int]  # every year the title was released in, anywhere
    primary_year: int | None

    @property
    def popularity(self) -> float:
        return float(self.record["popularity"])


def _words_match(query: list[str], words: tuple[str, ...]) -> bool:
    for i, word in enumerate(query):
        last = i == len(query) - 1
        if not any(w == word or (last and w.startswith(word)) for w in words):
            return False
    return True


def _year(date: str) -> int | None:
    return int(date[:4]) if len(date) >= 4 and date[:4].isdigit() else None


def _entry(record: dict[str, Any], titles: list[str], dates: list[str], primary: str) -> _Entry:
    normalised = [normalise(t) for t in titles if t]
    return _Entry(
        record=record,
        names=tuple(tuple(n.split()) for n in normalised),
        joined=tuple(n.replace(" ", "") for n in normalised),
        years=frozenset(y for y in (_year(d) for d in dates) if y is not None),
        primary_year=_year(primary),
    )


class Catalogue:
    """The bundled records, indexed for TMDB's lookups and searches. Read-only and thread-safe."""

    def __init__(self, movies: list[dict[str, Any]], shows: list[dict[str, Any]]) -> None:
        self.movies = {m["id"]: m for m in movies}
        self.shows = {s["id"]: s for s in shows}
        self._movie_entries = [self._movie_entry(m) for m in movies]
        self._show_entries = [self._show_entry(s) for s in shows]
        self._by_imdb: dict[str, tuple[str, dict[str, Any]]] = {}
        for kind, records in (("movie", movies), ("tv", shows)):
            for r in records:
                imdb = r["external_ids"]["imdb_id"]
                if imdb:
                    self._by_imdb[imdb] = (kind, r)

    @staticmethod
    def _movie_entry(m: dict[str, Any]) -> _Entry:
        titles = [m["title"], m["original_title"]]
        titles += [t["title"] for t in m["alternative_titles"]["titles"]]
        dates = [m["release_date"]] + [
            d["release_date"]
            for country in m["release_dates"]["results"]
            for d in country["release_dates"]
        ]
        return _entry(m, titles, dates, m["release_date"])

    @staticmethod
    def _show_entry(s: dict[str, Any]) -> _Entry:
        # A show "released" in every year it was on the air: TMDB's search/tv `year` matches
        # any episode's air date.
        first, last = (
            _year(s["first_air_date"]),
            _year(s["last_air_date"]) or _year(s["first_air_date"]),
        )
        years = [f"{y}" for y in range(first, (last or first) + 1)] if first else []
        return _entry(s, [s["name"], s["original_name"]], years, s["first_air_date"])

    def search_movies(
        self, query: str, *, year: int | None = None, primary_release_year: int | None = None
    ) -> list[dict[str, Any]]:
        """Movie List Results matching `query`; `year` keeps films with any release in that
        year, `primary_release_year` those whose primary release date is in it."""
        hits = self._search(self._movie_entries, query)
        if year is not None:
            hits = [e for e in hits if year in e.years]
        if primary_release_year is not None:
            hits = [e for e in hits if e.primary_year == primary_release_year]
        return [movie_result(e.record) for e in hits]

    def search_shows(
        self, query: str, *, first_air_date_year: int | None = None, year: int | None = None
    ) -> list[dict[str, Any]]:
        """TV List Results matching `query`; `first_air_date_year` keeps shows that began that
        year, `year` those on the air in it."""
        hits = self._search(self._show_entries, query)
        if first_air_date_year is not None:
            hits = [e for e in hits if e.primary_year == first_air_date_year]
        if year is not None:
            hits = [e for e in hits if year in e.years]
        return [tv_result(e.record) for e in hits]

    def find_imdb(self, imdb_id: str) -> tuple[str, dict[str, Any]] | None:
        """('movie' | 'tv', record) with this IMDb id, or None."""
        return self._by_imdb.get(imdb_id)

    @staticmethod
    def _search(entries: list[_Entry], query: str) -> list[_Entry]:
        words = normalise(query).split()
        if not words:
            return []
        unspaced = "".join(words)
        hits = [
            e
            for e in entries
            if any(_words_match(words, n) for n in e.names)
            or (_UNSPACED.search(unspaced) and any(unspaced in j for j in e.joined))
        ]
        return sorted(hits, key=lambda e: (-e.popularity, e.record["id"]))


def movie_result(record: dict[str, Any]) -> dict[str, Any]:
    return _list_result(record, MOVIE_RESULT_FIELDS)


def tv_result(record: dict[str, Any]) -> dict[str, Any]:
    return _list_result(record, TV_RESULT_FIELDS)


def _list_result(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for field in fields:
        if field == "genre_ids":
            out[field] = [g["id"] for g in record["genres"]]
        else:
            out[field] = record[field]
    return out


def details(record: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    """The details object: the record without its sub-resources."""
    return {k: v for k, v in record.items() if k not in parts}


def _load_json(name: str) -> Any:
    return json.loads((resources.files(__package__) / "data" / name).read_text("utf-8"))


@cache
def bundled() -> Catalogue:
    """The catalogue shipped with the package (loaded once per process)."""
    return Catalogue(_load_json("movies.json"), _load_json("tv.json"))


@cache
def bundled_document(name: str) -> Any:
    """A bundled JSON document that is served as is: configuration.json, genres.json."""
    return _load_json(name)
