"""cinejobs.tmdb.Client: The Movie Database's v3 API, called by the C++ core.

    client = cinejobs.tmdb.Client()            # TMDB_API_KEY or TMDB_READ_TOKEN, TMDB_BASE_URL
    hits = client.search_movie("Heat", year=1995)["results"]
    film = client.movie(hits[0]["id"])         # None when TMDB has no such film

Each call is one GET, or none when the response cache has the answer. Requests first take a
unit of the rate limiter named "tmdb" (40 per 10 s by default, kept in this process or in a
broker's store so every worker shares it), retry 5xx answers, timeouts and malformed bodies with
exponential backoff, and pause the shared limiter for a 429's Retry-After. Refused credentials
raise TmdbAuthError at once; what cannot be had after the retries raises TmdbError. The GIL is
released for the whole call, so threads make requests in parallel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _core
from ._redact import redact
from .errors import TmdbError

if TYPE_CHECKING:
    from .app import App

__all__ = ["DEFAULT_MOVIE_APPEND", "DEFAULT_TV_APPEND", "Client", "ResponseCache"]

DEFAULT_MOVIE_APPEND = ("credits", "keywords", "external_ids", "release_dates")
DEFAULT_TV_APPEND = ("credits", "external_ids")
WEEK = 7 * 24 * 3600.0


def _url(where: App | str, what: str) -> str:
    if isinstance(where, str):
        return where
    url = getattr(where, "broker_url", None)
    if not isinstance(url, str):
        raise TypeError(f"{what} must be a URL or an App, got {type(where).__qualname__}")
    return url


def _seconds(value: float, what: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be seconds as a number, got {type(value).__qualname__}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{what} must be a finite number of seconds >= {minimum:g}, got {value!r}")
    return float(value)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__qualname__}")
    return value


def _optional_int(value: object, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__qualname__}")
    return value


def _appends(value: str | Sequence[str]) -> str:
    if isinstance(value, str):
        return value
    return ",".join(_text(v, "append_to_response entries") for v in value)


def _param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    raise TypeError(f"query parameters must be str, int or bool, got {type(value).__qualname__}")


def _document(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    body: dict[str, Any] = json.loads(text)  # the core checked it is one JSON object
    return body


def _found(text: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(text)
    return body


class Client:
    """A TMDB v3 client, safe to share between threads.

    Credentials: ``read_token`` (a v4 read access token, sent as a Bearer token; preferred) or
    ``api_key`` (a v3 key, sent as ``api_key=``); by default ``$TMDB_READ_TOKEN`` and
    ``$TMDB_API_KEY``. ``base_url`` defaults to ``$TMDB_BASE_URL``, else TMDB's own.

    ``rate_limit``: requests per period for the limiter named "tmdb" ("40/10s"; None: no
    limit), kept in ``rate_limit_store``: "local" (this process) or a broker URL or App (every
    process on that broker shares it). ``cache``: None, "memory", or a broker URL or App, where
    answers (and not-found answers) are kept for ``cache_ttl`` seconds and shared by every client
    on that store; a cached answer makes no request and takes no rate limit unit.

    ``timeout`` bounds one request; a call makes up to ``max_attempts`` of them, waiting
    ``backoff`` seconds before the first retry and twice as long before each next one. A 429 is
    not a failed attempt (see ``TmdbClient`` in the C++ header). Raises ConfigError for missing
    credentials or a bad setting, BrokerUnavailable when a shared store cannot be reached.
    """

    def __init__(
        self,
        api_key: str | None = None,
        read_token: str | None = None,
        base_url: str | None = None,
        language: str = "en-US",
        *,
        rate_limit: str | None = "40/10s",
        rate_limit_store: App | str = "local",
        cache: App | str | None = None,
        cache_ttl: float = WEEK,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
    ) -> None:
        for value, what in (
            (api_key, "api_key"),
            (read_token, "read_token"),
            (base_url, "base_url"),
        ):
            if value is not None:
                _text(value, what)
        self._core = _core.TmdbClient(
            api_key=api_key,
            read_token=read_token,
            base_url=base_url,
            language=_text(language, "language"),
            timeout=_seconds(timeout, "timeout"),
            connect_timeout=_seconds(connect_timeout, "connect_timeout"),
            max_attempts=_int(max_attempts, "max_attempts"),
            backoff=_seconds(backoff, "backoff"),
            rate_limit=None if rate_limit is None else _text(rate_limit, "rate_limit"),
            rate_limit_store=_url(rate_limit_store, "rate_limit_store"),
            cache=None if cache is None else _url(cache, "cache"),
            cache_ttl=_seconds(cache_ttl, "cache_ttl", minimum=1.0),
        )

    @property
    def base_url(self) -> str:
        return self._core.base_url

    @property
    def language(self) -> str:
        return self._core.language

    @property
    def auth(self) -> str:
        """The credential sent: "read_token" or "api_key"."""
        return self._core.auth

    @property
    def cache(self) -> str | None:
        """Where answers are cached: "memory", "sqlite", "redis", "postgres", or None."""
        return self._core.cache_kind

    def get(
        self, path: str, params: Mapping[str, str | int | bool] | None = None
    ) -> dict[str, Any] | None:
        """GET any v3 path (``"/movie/550/credits"``) with query parameters (credentials are
        added here); None when TMDB answers not found."""
        items = [(_text(k, "parameter names"), _param(v)) for k, v in (params or {}).items()]
        return _document(self._core.get(_text(path, "path"), items))

    def search_movie(
        self,
        query: str,
        *,
        year: int | None = None,
        primary_release_year: int | None = None,
        language: str | None = None,
        include_adult: bool = False,
        page: int = 1,
    ) -> dict[str, Any]:
        """search/movie: ``{"page", "results", "total_pages", "total_results"}``."""
        return _found(
            self._core.search_movie(
                _text(query, "query"),
                _optional_int(year, "year"),
                _optional_int(primary_release_year, "primary_release_year"),
                "" if language is None else _text(language, "language"),
                bool(include_adult),
                _int(page, "page"),
            )
        )

    def search_tv(
        self,
        query: str,
        *,
        first_air_date_year: int | None = None,
        language: str | None = None,
        include_adult: bool = False,
        page: int = 1,
    ) -> dict[str, Any]:
        """search/tv: ``{"page", "results", "total_pages", "total_results"}``."""
        return _found(
            self._core.search_tv(
                _text(query, "query"),
                _optional_int(first_air_date_year, "first_air_date_year"),
                "" if language is None else _text(language, "language"),
                bool(include_adult),
                _int(page, "page"),
            )
        )

    def movie(
        self, id: int, append_to_response: str | Sequence[str] = DEFAULT_MOVIE_APPEND
    ) -> dict[str, Any] | None:
        """movie/{id} with the sub-resources named in ``append_to_response``; None when TMDB
        has no such film."""
        return _document(self._core.movie(_int(id, "id"), _appends(append_to_response)))

    def tv(
        self, id: int, append_to_response: str | Sequence[str] = DEFAULT_TV_APPEND
    ) -> dict[str, Any] | None:
        """tv/{id} with the sub-resources named in ``append_to_response``; None when TMDB has
        no such show."""
        return _document(self._core.tv(_int(id, "id"), _appends(append_to_response)))

    def find(self, imdb_id: str) -> dict[str, Any]:
        """find/{imdb_id}?external_source=imdb_id: ``movie_results``, ``tv_results``, ...
        (empty lists when TMDB knows no such id)."""
        return _found(self._core.find_by_imdb_id(_text(imdb_id, "imdb_id")))

    def configuration(self) -> dict[str, Any]:
        """The /configuration document (cached like any answer)."""
        body = self._core.get("/configuration", [])
        if body is None:
            raise TmdbError(
                f"TMDB answered 404 to /configuration at {redact(self.base_url)}: is TMDB_BASE_URL "
                "right? (TMDB's ends in /3)"
            )
        return _found(body)

    @property
    def images(self) -> dict[str, Any]:
        """``{"secure_base_url": ..., "poster_sizes": [...]}`` from /configuration, fetched on
        first use and then kept for the client's life."""
        return self._core.images()

    def stats(self) -> dict[str, Any]:
        """Counters since the client was made: ``requests`` (sent, retries included),
        ``cache_hits``, ``retries``, ``rate_limited`` (429s received), ``not_found``, and
        ``limiter_wait`` (seconds spent waiting for the rate limiter)."""
        return self._core.stats()

    def __repr__(self) -> str:
        return (
            f"<cinejobs.tmdb.Client {redact(self.base_url)} auth={self.auth} "
            f"cache={redact(str(self.cache))}>"
        )


class ResponseCache:
    """The response cache a Client uses, opened on its own: "memory" (this process) or a broker
    URL or App (the broker's store: SQLite table, Redis keys, PostgreSQL table). Keys are the
    client's: ``"GET /movie/550?append_to_response=credits&language=en-US"`` (parameters sorted,
    without credentials); an expired entry is the same as a missing one."""

    def __init__(self, url: App | str = "memory") -> None:
        self._core = _core.ResponseCache(_url(url, "url"))

    @property
    def kind(self) -> str:
        return self._core.kind

    def get(self, key: str) -> str | None:
        return self._core.get(_text(key, "key"))

    def put(self, key: str, body: str, ttl: float) -> None:
        """Store ``body`` under ``key`` for ``ttl`` seconds (rounded up; 0 removes it)."""
        self._core.put(_text(key, "key"), _text(body, "body"), _seconds(ttl, "ttl"))

    def prune(self) -> int:
        """Remove expired entries and return how many went (Redis expires its own: 0)."""
        return self._core.prune()
