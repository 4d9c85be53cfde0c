"""TMDB enrichment helpers: release-name parsing and title matching.

``parse_release_name("Inception.2010.1080p.BluRay.x264-SPARKS")`` says what a release name
holds; ``rank_candidates`` orders TMDB search results by how well they match a title and year;
``search_fallbacks`` lists the searches to try when the first finds nothing. The work is done
by the C++ core, so the worker binary and Python agree on every name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, cast

from . import _core
from .tmdb_client import Client

__all__ = [
    "Client",
    "RankedCandidate",
    "ReleaseInfo",
    "SearchQuery",
    "normalize_title",
    "parse_release_name",
    "rank_candidates",
    "search_fallbacks",
    "title_similarity",
]


class ReleaseInfo(TypedDict):
    """What a release name holds; None where the name does not say."""

    title: str
    year: int | None
    season: int | None
    episode: int | None
    last_episode: int | None  # S01E02E03 -> 3
    air_date: str | None  # daily shows: "2023-01-15"
    resolution: str | None  # 2160p, 1080p, 720p, ...
    source: str | None  # BluRay, Remux, WEB-DL, WEBRip, WEB, HDTV, DVDRip, CAM, ...
    codec: str | None  # H.264, H.265, AV1, XviD, ...
    audio: str | None  # DTS-HD MA, TrueHD Atmos, DDP, DD, AAC, ...
    channels: str | None  # "5.1"
    group: str | None
    tags: list[str]  # REPACK, EXTENDED, IMAX, HDR, DV, 10bit, languages, services
    kind: str  # "movie", "episode", "season" or "unknown"
    enrichable: bool
    reason: str | None  # why not enrichable: sample, subtitles, trailer, extras, software, ...


class RankedCandidate(TypedDict):
    """A search result with its match scores (each 0..1), best first in a ranking."""

    id: int
    title: str
    original_title: str
    year: int | None
    popularity: float
    confidence: float
    similarity: float
    year_score: float


class SearchQuery(TypedDict):
    """One search to make: a title and, when it narrows the search, a year."""

    title: str
    year: int | None


def parse_release_name(name: str) -> ReleaseInfo:
    """Parse a release or file name (``The.Office.US.S03E12.720p.WEB-DL.DD5.1-NTb``).

    Any string is accepted; a name with nothing recognisable is a movie titled by the whole
    name, an empty one is ``kind="unknown"`` with ``reason="no title"``.
    """
    if not isinstance(name, str):
        raise TypeError(f"parse_release_name() takes a str, not {type(name).__name__}")
    return cast(ReleaseInfo, _core.parse_release_name(name))


def normalize_title(title: str) -> str:
    """Fold a title for comparison: case, Latin diacritics, punctuation, '&', one leading
    article and roman numerals II..IX (``"The Lord of the Rings: Part II"`` ->
    ``"lord of the rings part 2"``)."""
    return _core.normalize_title(title)


def title_similarity(a: str, b: str) -> float:
    """How alike two titles are, 0..1, after normalize_title (normalised Levenshtein, word
    order ignored)."""
    return _core.title_similarity(a, b)


def _year_of(candidate: Mapping[str, Any]) -> int | None:
    year = candidate.get("year")
    if year is not None:
        if isinstance(year, bool) or not isinstance(year, int):
            raise ValueError(f"candidate year must be an int or None, got {year!r}")
        return year
    # TMDB's own shapes: release_date (movies) or first_air_date (TV), "YYYY-MM-DD" or "".
    date = candidate.get("release_date") or candidate.get("first_air_date") or ""
    if not isinstance(date, str):
        raise ValueError(f"candidate release date must be a string, got {date!r}")
    head = date[:4]
    return int(head) if len(head) == 4 and head.isdigit() else None


def _candidate_fields(candidate: Mapping[str, Any]) -> tuple[int, str, str, int | None, float]:
    if not isinstance(candidate, Mapping):
        raise ValueError(f"each candidate must be a mapping, got {type(candidate).__name__}")
    tmdb_id = candidate.get("id")
    if isinstance(tmdb_id, bool) or not isinstance(tmdb_id, int):
        raise ValueError(f"candidate needs an integer 'id', got {candidate!r}")
    title = candidate.get("title", candidate.get("name"))
    if not isinstance(title, str):
        raise ValueError(f"candidate {tmdb_id} needs a 'title' (or TV 'name') string")
    original = candidate.get("original_title", candidate.get("original_name")) or ""
    if not isinstance(original, str):
        raise ValueError(f"candidate {tmdb_id}: original title must be a string")
    popularity = candidate.get("popularity") or 0.0
    if isinstance(popularity, bool) or not isinstance(popularity, int | float):
        raise ValueError(f"candidate {tmdb_id}: popularity must be a number")
    return tmdb_id, title, original, _year_of(candidate), float(popularity)


def rank_candidates(
    title: str,
    candidates: Iterable[Mapping[str, Any]],
    *,
    year: int | None = None,
    original_title: str | None = None,
) -> list[RankedCandidate]:
    """Rank search results for a title (and year), best first.

    Candidates are TMDB result objects as search/movie or search/tv return them (``id``,
    ``title``/``name``, ``original_title``/``original_name``, ``release_date``/
    ``first_air_date``, ``popularity``), or mappings with a ``year`` instead of a date.
    ``confidence`` combines title similarity (0.70), year (0.25: same year 1, one year off
    0.7, unknown 0.5, else 0) and popularity (0.05, a tie-breaker).
    """
    items = [_candidate_fields(c) for c in candidates]
    ranked = _core.rank_candidates(title, year, original_title or "", items)
    return [
        RankedCandidate(
            id=tmdb_id,
            title=name,
            original_title=original,
            year=released,
            popularity=popularity,
            confidence=confidence,
            similarity=similarity,
            year_score=year_score,
        )
        for tmdb_id, name, original, released, popularity, confidence, similarity, year_score in (
            ranked
        )
    ]


def search_fallbacks(
    title: str, *, year: int | None = None, original_title: str | None = None
) -> list[SearchQuery]:
    """The searches to try, in order, when searching for ``title`` (and ``year``) found
    nothing: without the year, the original title, punctuation stripped, leading article
    dropped, trailing country code (``The Office US``) dropped. None repeats the query or an
    earlier entry."""
    return [
        SearchQuery(title=t, year=y)
        for t, y in _core.search_fallbacks(title, year, original_title or "")
    ]
