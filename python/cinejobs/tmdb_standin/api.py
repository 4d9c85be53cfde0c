"""TMDB's v3 API over the bundled catalogue: paths, query parameters, response shapes and the
`success`/`status_code`/`status_message` error bodies, as TMDB documents them.

`answer()` is pure (no sockets, no sleeping): it turns a request path and query into a status and
a JSON body. The server adds behaviour (latency, rate limit, faults) around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalogue import (
    MOVIE_PARTS,
    TV_PARTS,
    Catalogue,
    bundled_document,
    details,
    movie_result,
    tv_result,
)

PAGE_SIZE = 20
MAX_PAGE = 500
MAX_APPENDS = 20

# TMDB's status codes (the error body's status_code) with their HTTP status and message.
INVALID_PARAMETERS = (422, 5, "Invalid parameters: Your request parameters are incorrect.")
INVALID_API_KEY = (401, 7, "Invalid API key: You must be granted a valid key.")
SERVICE_OFFLINE = (503, 9, "Service offline: This service is temporarily offline, try again later.")
INTERNAL_ERROR = (500, 11, "Internal error: Something went wrong, contact TMDb.")
INVALID_PAGE = (
    400,
    22,
    f"Invalid page: Pages start at 1 and max at {MAX_PAGE}. They are expected to be an integer.",
)
BACKEND_TIMEOUT = (504, 24, "Your request to the backend server timed out. Try again.")
TOO_MANY_APPENDS = (
    400,
    27,
    "Too many append to response objects: The maximum number of remote calls is 20.",
)
NOT_FOUND = (404, 34, "The resource you requested could not be found.")

# The answers of the injected 5xx faults that TMDB itself gives (a 502 comes from a gateway).
FAULT_ERRORS = {"500": INTERNAL_ERROR, "503": SERVICE_OFFLINE, "504": BACKEND_TIMEOUT}

EXTERNAL_SOURCES = (
    "imdb_id", "facebook_id", "instagram_id", "tvdb_id", "tiktok_id", "twitter_id",
    "wikidata_id", "youtube_id",
)  # fmt: skip


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, error: tuple[int, int, str]) -> None:
        self.error = error


def error_body(status_code: int, message: str) -> dict[str, Any]:
    return {"success": False, "status_code": status_code, "status_message": message}


def error(error: tuple[int, int, str]) -> Answer:
    http_status, status_code, message = error
    return Answer(http_status, error_body(status_code, message))


def rate_limited(limit: int, retry_after_s: int) -> Answer:
    """TMDB's answer to the request one past the limit (status_code 25), with Retry-After in
    seconds."""
    message = f"Your request count ({limit + 1}) is over the allowed limit of ({limit})."
    return Answer(429, error_body(25, message), {"Retry-After": str(retry_after_s)})


def authorised(
    query: Mapping[str, Sequence[str]],
    authorization: str | None,
    api_key: str | None,
    read_token: str | None,
) -> bool:
    """Whether the request carries an accepted credential: ?api_key=<v3 key> or
    'Authorization: Bearer <v4 read token>'."""
    if api_key is None and read_token is None:
        return True
    given_key = _one(query, "api_key")
    if api_key is not None and given_key == api_key:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    return read_token is not None and scheme.lower() == "bearer" and token.strip() == read_token


def path_template(path: str) -> str:
    """The route a path belongs to, for counting: /3/movie/550/credits -> /3/movie/{id}/credits."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 4 and parts[2] in ("movie", "tv"):
        parts[3] = "{id}"
    elif len(parts) >= 4 and parts[2] == "find":
        parts[3] = "{external_id}"
    return "/".join(parts) or "/"


def answer(catalogue: Catalogue, path: str, query: Mapping[str, Sequence[str]]) -> Answer:
    """TMDB's answer to GET `path` with `query` (already authorised)."""
    try:
        return _route(catalogue, path.rstrip("/"), query)
    except _Refused as refused:
        return error(refused.error)


# The year parameters each search endpoint takes (see Catalogue.search_movies / search_shows).
_SEARCH_YEAR_FILTERS = {
    "/3/search/movie": ("year", "primary_release_year"),
    "/3/search/tv": ("first_air_date_year", "year"),
}
_MOVIE = re.compile(r"/3/movie/([^/]+)(?:/([a-z_]+))?")
_TV = re.compile(r"/3/tv/([^/]+)(?:/([a-z_]+))?")
_FIND = re.compile(r"/3/find/([^/]+)")


def _route(catalogue: Catalogue, path: str, query: Mapping[str, Sequence[str]]) -> Answer:
    if path == "/3/configuration":
        return Answer(200, bundled_document("configuration.json"))
    if path in ("/3/genre/movie/list", "/3/genre/tv/list"):
        return Answer(200, bundled_document("genres.json")[path.split("/")[3]])
    if path in _SEARCH_YEAR_FILTERS:
        search = catalogue.search_movies if path.endswith("movie") else catalogue.search_shows
        years = {name: _year(query, name) for name in _SEARCH_YEAR_FILTERS[path]}
        return _page(search(_one(query, "query") or "", **years), query)
    if m := _MOVIE.fullmatch(path):
        return _item(catalogue.movies, m.group(1), m.group(2), MOVIE_PARTS, query)
    if m := _TV.fullmatch(path):
        return _item(catalogue.shows, m.group(1), m.group(2), TV_PARTS, query)
    if m := _FIND.fullmatch(path):
        return _find(catalogue, m.group(1), query)
    return error(NOT_FOUND)


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _year(query: Mapping[str, Sequence[str]], name: str) -> int | None:
    text = _one(query, name)
    if text is None or text == "":
        return None
    if not text.isdigit() or not 1800 <= int(text) <= 9999:
        raise _Refused(INVALID_PARAMETERS)
    return int(text)


def _page(results: list[dict[str, Any]], query: Mapping[str, Sequence[str]]) -> Answer:
    text = _one(query, "page") or "1"
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise _Refused(INVALID_PAGE)
    page = int(text)
    start = (page - 1) * PAGE_SIZE
    return Answer(
        200,
        {
            "page": page,
            "results": results[start : start + PAGE_SIZE],
            "total_pages": max(1, math.ceil(len(results) / PAGE_SIZE)),
            "total_results": len(results),
        },
    )


def _item(
    records: Mapping[int, dict[str, Any]],
    id_text: str,
    part: str | None,
    parts: tuple[str, ...],
    query: Mapping[str, Sequence[str]],
) -> Answer:
    record = records.get(int(id_text)) if id_text.isdigit() else None
    if record is None:
        return error(NOT_FOUND)
    if part is not None:
        # A sub-resource on its own carries the record's id; appended, it does not.
        if part not in parts:
            return error(NOT_FOUND)
        return Answer(200, {"id": record["id"], **record[part]})
    body = details(record, parts)
    appends = [a for a in (_one(query, "append_to_response") or "").split(",") if a]
    if len(appends) > MAX_APPENDS:
        return error(TOO_MANY_APPENDS)
    for name in appends:
        if name in parts:  # TMDB ignores names it does not know
            body[name] = record[name]
    return Answer(200, body)


def _find(catalogue: Catalogue, external_id: str, query: Mapping[str, Sequence[str]]) -> Answer:
    source = _one(query, "external_source")
    if source not in EXTERNAL_SOURCES:
        return error(INVALID_PARAMETERS)
    body: dict[str, list[dict[str, Any]]] = {
        "movie_results": [],
        "person_results": [],
        "tv_results": [],
        "tv_episode_results": [],
        "tv_season_results": [],
    }
    found = catalogue.find_imdb(external_id) if source == "imdb_id" else None
    if found is not None:
        kind, record = found
        if kind == "movie":
            body["movie_results"].append({**movie_result(record), "media_type": "movie"})
        else:
            body["tv_results"].append({**tv_result(record), "media_type": "tv"})
    return Answer(200, body)
