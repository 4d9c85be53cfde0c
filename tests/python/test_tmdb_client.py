"""cinejobs.tmdb.Client (the C++ TmdbClient) against the TMDB stand-in over real HTTP: both
credentials, refused credentials, not-found answers, 429 with Retry-After, injected 5xx,
malformed and truncated bodies, hung requests, sparse records, the response cache on every
broker store, and the shared rate limiter under concurrent callers."""

from __future__ import annotations

import concurrent.futures
import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

import cinejobs
from cinejobs.tmdb import Client
from cinejobs.tmdb_client import ResponseCache
from cinejobs.tmdb_standin import TmdbStandin, bundled

KEY = "standin-api-key"
TOKEN = "standin-read-token"
FIGHT_CLUB_KEY = (
    "GET /movie/550?append_to_response=credits%2Ckeywords%2Cexternal_ids%2Crelease_dates"
    "&language=en-US"
)


@pytest.fixture(autouse=True)
def no_tmdb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's TMDB credentials must not leak into the tests."""
    for name in ("TMDB_API_KEY", "TMDB_READ_TOKEN", "TMDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tmdb() -> Iterator[TmdbStandin]:
    with TmdbStandin() as standin:
        yield standin


def client(tmdb: TmdbStandin, **options: Any) -> Client:
    """A client of the stand-in with the v3 key, no rate limit and short backoffs."""
    settings: dict[str, Any] = {
        "base_url": tmdb.base_url,
        "api_key": KEY,
        "rate_limit": None,
        "backoff": 0.01,
    }
    settings.update(options)
    return Client(**settings)


def requests_made(tmdb: TmdbStandin) -> int:
    return int(tmdb.stats()["requests"])


# --- credentials ---------------------------------------------------------------------------


def test_the_v3_key_from_the_environment_authenticates(monkeypatch: pytest.MonkeyPatch) -> None:
    with TmdbStandin(read_token=None) as tmdb:  # only the key is accepted
        monkeypatch.setenv("TMDB_BASE_URL", tmdb.base_url)
        monkeypatch.setenv("TMDB_API_KEY", KEY)
        c = Client(rate_limit=None)
        assert c.auth == "api_key" and c.base_url == tmdb.base_url
        film = c.movie(550)
        assert film is not None and film["title"] == "Fight Club"


def test_the_v4_read_token_authenticates_and_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    with TmdbStandin(api_key=None) as tmdb:  # only the token is accepted
        monkeypatch.setenv("TMDB_BASE_URL", tmdb.base_url)
        monkeypatch.setenv("TMDB_API_KEY", "a-key-this-standin-refuses")
        monkeypatch.setenv("TMDB_READ_TOKEN", TOKEN)
        c = Client(rate_limit=None)
        assert c.auth == "read_token"
        assert c.search_movie("Fight Club")["results"][0]["id"] == 550


def test_no_credentials_is_a_config_error(tmdb: TmdbStandin) -> None:
    with pytest.raises(cinejobs.ConfigError, match="TMDB_API_KEY"):
        Client(base_url=tmdb.base_url)


@pytest.mark.parametrize("credential", ["api_key", "read_token"])
def test_a_refused_credential_raises_tmdb_auth_error_after_one_request(
    tmdb: TmdbStandin, credential: str
) -> None:
    c = Client(base_url=tmdb.base_url, rate_limit=None, **{credential: "wrong"})
    with pytest.raises(cinejobs.TmdbAuthError) as raised:
        c.movie(550)
    message = str(raised.value)
    assert "Invalid API key" in message and "status_code 7" in message
    assert "TMDB_API_KEY" in message and "TMDB_READ_TOKEN" in message
    assert isinstance(raised.value, cinejobs.TmdbError) and isinstance(
        raised.value, PermissionError
    )
    assert requests_made(tmdb) == 1, "refused credentials are not retried"
    assert c.stats()["retries"] == 0


# --- answers -------------------------------------------------------------------------------


def test_searches_details_find_and_configuration(tmdb: TmdbStandin) -> None:
    c = client(tmdb)
    assert c.search_movie("Inception")["results"][0]["title"] == "Inception"
    heat = c.search_movie("Heat", year=1995)["results"]
    assert heat[0]["release_date"].startswith("1995")
    uk = c.search_tv("the office", first_air_date_year=2001)["results"]
    assert [r["origin_country"] for r in uk] == [["GB"]]
    show = c.tv(1396)
    assert show is not None and show["name"] == "Breaking Bad"
    assert show["external_ids"]["imdb_id"] == "tt0903747"
    assert [m["id"] for m in c.find("tt0111161")["movie_results"]] == [278]
    assert all(v == [] for v in c.find("tt0000000").values())
    assert c.get("/movie/550/credits") is not None
    assert c.configuration()["images"]["secure_base_url"] == "https://image.tmdb.org/t/p/"
    images = c.images
    assert images["secure_base_url"] == "https://image.tmdb.org/t/p/"
    assert "w500" in images["poster_sizes"]
    before = requests_made(tmdb)
    assert c.images == images
    assert requests_made(tmdb) == before, "configuration is fetched once per client"


def test_missing_and_null_fields_pass_through(tmdb: TmdbStandin) -> None:
    c = client(tmdb)
    unreleased = c.movie(1100001, append_to_response="credits")
    assert unreleased is not None and unreleased["title"] == "Dune: Part Three"
    assert unreleased["poster_path"] is None and unreleased["backdrop_path"] is None
    assert unreleased["release_date"] == "" and unreleased["imdb_id"] is None
    assert unreleased["credits"]["cast"] == []
    uncredited = c.movie(1100004, append_to_response=["credits", "keywords"])
    assert uncredited is not None
    assert uncredited["credits"] == {"cast": [], "crew": []}
    assert uncredited["keywords"] == {"keywords": []} and uncredited["runtime"] == 0


def test_not_found_is_none_and_cached(tmdb: TmdbStandin, tmp_path: Path) -> None:
    c = client(tmdb, cache=f"sqlite:///{tmp_path}/cache.db")
    assert c.movie(999_999_999) is None
    assert c.tv(999_999_999) is None
    assert c.movie(999_999_999) is None
    assert c.tv(999_999_999) is None
    assert requests_made(tmdb) == 2, "a not-found answer is not asked for again within the ttl"
    stats = c.stats()
    assert stats["not_found"] == 4 and stats["cache_hits"] == 2 and stats["requests"] == 2


def test_bad_arguments_are_refused_and_tmdbs_refusals_not_retried(tmdb: TmdbStandin) -> None:
    c = client(tmdb)
    with pytest.raises(TypeError):
        c.movie("550")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.search_movie("Heat", year="1995")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client(tmdb, cache="memory", cache_ttl=0)
    with pytest.raises(cinejobs.ConfigError):
        client(tmdb, base_url="ftp://127.0.0.1/3")
    with pytest.raises(cinejobs.ConfigError):
        client(tmdb, rate_limit="forty a second")
    with pytest.raises(cinejobs.TmdbError, match="status_code 22: Invalid page"):
        c.search_movie("Heat", page=0)  # TMDB refuses it: not retried
    assert requests_made(tmdb) == 1


# --- faults --------------------------------------------------------------------------------


def test_injected_5xx_malformed_and_truncated_answers_are_retried(tmdb: TmdbStandin) -> None:
    faults = ["500", "502", "503", "504", "malformed", "truncated"]
    tmdb.configure(fault_schedule=faults)
    c = client(tmdb, max_attempts=len(faults) + 1)
    film = c.movie(550)
    assert film is not None and film["title"] == "Fight Club"
    stats = c.stats()
    assert stats["requests"] == len(faults) + 1 and stats["retries"] == len(faults)
    assert tmdb.stats()["faults"] == {k: 1 for k in faults}


def test_persistent_5xx_raises_tmdb_error_after_max_attempts(tmdb: TmdbStandin) -> None:
    tmdb.configure(fault_rate=1.0, fault_kinds=["500"])
    c = client(tmdb, max_attempts=3)
    with pytest.raises(cinejobs.TmdbError) as raised:
        c.movie(550)
    assert not isinstance(raised.value, cinejobs.TmdbAuthError)
    message = str(raised.value)
    assert "/movie/550" in message and "failed 3 times" in message
    assert "status_code 11: Internal error" in message
    assert KEY not in message
    assert requests_made(tmdb) == 3


def test_a_hung_request_is_retried_after_the_client_timeout() -> None:
    with TmdbStandin(hang_s=120) as tmdb:
        tmdb.configure(fault_schedule=["hang"])
        c = client(tmdb, timeout=0.5)
        started = time.monotonic()
        film = c.movie(550)
        elapsed = time.monotonic() - started
        assert film is not None and film["title"] == "Fight Club"
        assert c.stats()["retries"] == 1 and requests_made(tmdb) == 2
        assert elapsed < 60, "the retry came after the client's timeout, not the server's hang"


# --- 429 -----------------------------------------------------------------------------------


def test_429_pauses_the_shared_limiter_for_retry_after_then_succeeds(tmp_path: Path) -> None:
    # The stand-in admits 3 requests per 2 s; the client's own limit is far looser, so the
    # fourth request is turned away and Retry-After (1 or 2 s) decides when it goes again.
    with TmdbStandin(rate_limit=3, rate_window_s=2.0) as tmdb:
        c = client(tmdb, rate_limit="100/s", rate_limit_store=f"sqlite:///{tmp_path}/rl.db")
        films = [c.movie(i, append_to_response="") for i in (550, 603, 278, 13)]
        assert [f["id"] for f in films if f is not None] == [550, 603, 278, 13]
        assert tmdb.stats()["rate_limited"] == 1
        stats = c.stats()
        assert stats["rate_limited"] == 1 and stats["retries"] == 0
        # The retry waited for the limiter, paused for at least Retry-After's one second.
        assert stats["limiter_wait"] >= 0.9
        assert tmdb.stats()["by_status"] == {"200": 4, "429": 1}


def test_429_without_a_limiter_sleeps_for_retry_after_then_succeeds() -> None:
    with TmdbStandin(rate_limit=2, rate_window_s=1.0) as tmdb:
        c = client(tmdb)
        started = time.monotonic()
        films = [c.movie(i, append_to_response="") for i in (550, 603, 278)]
        assert all(f is not None for f in films)
        assert c.stats()["rate_limited"] == 1 and c.stats()["limiter_wait"] == 0
        assert time.monotonic() - started >= 0.9, "Retry-After (1 s) was not honoured"


@pytest.mark.slow
def test_the_tmdb_limiter_keeps_threads_under_tmdbs_limit(tmp_path: Path) -> None:
    # 50 requests at once from 10 threads, against a stand-in enforcing 40 per rolling 10 s:
    # the shared limiter (40/10s, period stretched by its margin) must space them so that none
    # is turned away.
    ids = sorted(bundled().movies)[:50]
    with TmdbStandin(rate_limit=40, rate_window_s=10.0) as tmdb:
        c = client(tmdb, rate_limit="40/10s", rate_limit_store=f"sqlite:///{tmp_path}/rl.db")
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            films = list(pool.map(lambda i: c.movie(i, append_to_response=""), ids))
        assert [f["id"] for f in films if f is not None] == ids
        assert tmdb.stats()["rate_limited"] == 0
        assert c.stats()["rate_limited"] == 0 and c.stats()["requests"] == 50


# --- the response cache --------------------------------------------------------------------


def test_the_cache_on_each_broker_store_is_shared_between_clients(
    tmdb: TmdbStandin, broker_url: str
) -> None:
    first = client(tmdb, cache=broker_url)
    assert first.cache in {"sqlite", "redis", "postgres"}
    film = first.movie(550)
    heat = first.search_movie("Heat", year=1995)
    assert first.movie(999_999_999) is None
    assert requests_made(tmdb) == 3
    del first
    gc.collect()  # the process's cache for the URL closes; the second client opens it afresh

    second = client(tmdb, cache=broker_url)
    assert second.movie(550) == film
    assert second.search_movie("Heat", year=1995) == heat
    assert second.movie(999_999_999) is None
    assert requests_made(tmdb) == 3, "the second client made requests"
    stats = second.stats()
    assert stats["requests"] == 0 and stats["cache_hits"] == 3


def test_language_is_part_of_the_cache_key(tmdb: TmdbStandin) -> None:
    english = client(tmdb, cache="memory")
    french = client(tmdb, cache="memory", language="fr-FR")
    english.movie(550)
    french.movie(550)
    english.movie(550)
    assert requests_made(tmdb) == 2


def test_cached_answers_expire_after_the_ttl(tmdb: TmdbStandin, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    c = client(tmdb, cache=url, cache_ttl=1)
    c.movie(550)
    c.movie(550)
    assert requests_made(tmdb) == 1
    cache = ResponseCache(url)
    assert cache.kind == "sqlite" and cache.get(FIGHT_CLUB_KEY) is not None
    wait_until(lambda: cache.get(FIGHT_CLUB_KEY) is None, timeout=10, what="the entry to expire")
    c.movie(550)
    assert requests_made(tmdb) == 2
    assert c.stats()["cache_hits"] == 1


def test_response_cache_put_get_and_prune() -> None:
    cache = ResponseCache("memory")
    cache.put("GET /x", '{"a": 1}', ttl=60)
    assert cache.get("GET /x") == '{"a": 1}'
    cache.put("GET /x", "", ttl=0)
    assert cache.get("GET /x") is None
    assert cache.prune() == 0
    with pytest.raises(cinejobs.ConfigError):
        ResponseCache("memcached://127.0.0.1")
