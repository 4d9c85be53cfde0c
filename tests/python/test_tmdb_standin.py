"""The TMDB stand-in, driven over real HTTP with urllib: TMDB's documented paths, shapes, status
codes and error bodies, and the misbehaviour it can be told to show (rate limit, faults,
latency)."""

from __future__ import annotations

import csv
import gzip
import http.client
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from cinejobs.tmdb_standin import TmdbStandin, bundled

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# TMDB's documented fields of a Movie List Result, a TV List Result, movie details and TV
# details (developer.themoviedb.org reference).
MOVIE_RESULT_FIELDS = {
    "adult", "backdrop_path", "genre_ids", "id", "original_language", "original_title",
    "overview", "popularity", "poster_path", "release_date", "title", "video", "vote_average",
    "vote_count",
}  # fmt: skip
TV_RESULT_FIELDS = {
    "adult", "backdrop_path", "genre_ids", "id", "origin_country", "original_language",
    "original_name", "overview", "popularity", "poster_path", "first_air_date", "name",
    "vote_average", "vote_count",
}  # fmt: skip
MOVIE_DETAIL_FIELDS = {
    "adult", "backdrop_path", "belongs_to_collection", "budget", "genres", "homepage", "id",
    "imdb_id", "origin_country", "original_language", "original_title", "overview",
    "popularity", "poster_path", "production_companies", "production_countries",
    "release_date", "revenue", "runtime", "spoken_languages", "status", "tagline", "title",
    "video", "vote_average", "vote_count",
}  # fmt: skip
TV_DETAIL_FIELDS = {
    "adult", "backdrop_path", "created_by", "episode_run_time", "first_air_date", "genres",
    "homepage", "id", "in_production", "languages", "last_air_date", "name", "networks",
    "number_of_episodes", "number_of_seasons", "origin_country", "original_language",
    "original_name", "overview", "popularity", "poster_path", "production_companies",
    "production_countries", "seasons", "spoken_languages", "status", "tagline", "type",
    "vote_average", "vote_count",
}  # fmt: skip
CAST_FIELDS = {
    "adult", "gender", "id", "known_for_department", "name", "original_name", "popularity",
    "profile_path", "cast_id", "character", "credit_id", "order",
}  # fmt: skip
CREW_FIELDS = {
    "adult", "gender", "id", "known_for_department", "name", "original_name", "popularity",
    "profile_path", "credit_id", "department", "job",
}  # fmt: skip
KEY = "standin-api-key"
TOKEN = "standin-read-token"


class Reply:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def fetch(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, dict(exc.headers), exc.read())


@pytest.fixture
def tmdb() -> Iterator[TmdbStandin]:
    with TmdbStandin() as standin:
        yield standin


def get(tmdb: TmdbStandin, path: str, **params: object) -> Reply:
    """GET a TMDB path with the v3 key."""
    query = urllib.parse.urlencode({"api_key": KEY, **params})
    return fetch(f"{tmdb.base_url}{path}?{query}")


def control(tmdb: TmdbStandin, name: str, body: object | None = None) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    return fetch(f"{tmdb.url}/__standin__/{name}", data=data)


def assert_tmdb_error(reply: Reply, http_status: int, status_code: int, message: str) -> None:
    assert reply.status == http_status
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json == {"success": False, "status_code": status_code, "status_message": message}


# --- shapes --------------------------------------------------------------------------------


def test_configuration_gives_the_image_base_url_and_sizes(tmdb: TmdbStandin) -> None:
    images = get(tmdb, "/configuration").json["images"]
    assert images["secure_base_url"] == "https://image.tmdb.org/t/p/"
    assert "w500" in images["poster_sizes"] and "original" in images["poster_sizes"]
    for sizes in ("backdrop_sizes", "logo_sizes", "profile_sizes", "still_sizes"):
        assert images[sizes][-1] == "original"


def test_search_movie_answers_tmdbs_paged_result_shape(tmdb: TmdbStandin) -> None:
    body = get(tmdb, "/search/movie", query="Inception").json
    assert set(body) == {"page", "results", "total_pages", "total_results"}
    assert body["page"] == 1 and body["total_results"] >= 1
    first = body["results"][0]
    assert set(first) == MOVIE_RESULT_FIELDS
    assert (first["id"], first["title"], first["release_date"]) == (
        27205,
        "Inception",
        "2010-07-15",
    )
    assert first["genre_ids"] == [28, 878, 12]
    assert first["poster_path"].startswith("/") and first["poster_path"].endswith(".jpg")


def test_movie_details_without_append_carry_no_sub_resources(tmdb: TmdbStandin) -> None:
    body = get(tmdb, "/movie/27205").json
    assert set(body) == MOVIE_DETAIL_FIELDS
    assert body["imdb_id"] == "tt1375666" and body["runtime"] == 148
    assert {"id": 878, "name": "Science Fiction"} in body["genres"]
    assert body["spoken_languages"] == [
        {"english_name": "English", "iso_639_1": "en", "name": "English"}
    ]
    assert body["status"] == "Released"


def test_append_to_response_adds_credits_keywords_ids_and_release_dates(tmdb: TmdbStandin) -> None:
    body = get(
        tmdb,
        "/movie/496243",
        append_to_response="credits,keywords,external_ids,release_dates,videos",
    ).json
    assert body["original_title"] == "기생충"
    assert "videos" not in body  # names TMDB has but the stand-in does not are left out
    cast = body["credits"]["cast"]
    assert set(cast[0]) == CAST_FIELDS
    assert [c["order"] for c in cast] == list(range(len(cast)))
    assert cast[0]["name"] == "Song Kang-ho" and cast[0]["character"] == "Kim Ki-taek"
    director = body["credits"]["crew"][0]
    assert set(director) == CREW_FIELDS
    assert (director["name"], director["job"], director["department"]) == (
        "Bong Joon-ho",
        "Director",
        "Directing",
    )
    assert body["keywords"]["keywords"][0].keys() == {"id", "name"}
    assert body["external_ids"]["imdb_id"] == "tt6751668"
    countries = {r["iso_3166_1"]: r["release_dates"] for r in body["release_dates"]["results"]}
    assert countries["US"][0]["release_date"] == "2019-10-11T00:00:00.000Z"
    assert countries["US"][0]["certification"] == "R"
    assert set(countries["KR"][0]) == {
        "certification", "descriptors", "iso_639_1", "note", "release_date", "type",
    }  # fmt: skip


def test_a_sub_resource_on_its_own_carries_the_id(tmdb: TmdbStandin) -> None:
    credits = get(tmdb, "/movie/550/credits").json
    assert credits["id"] == 550 and credits["cast"][0]["name"] == "Brad Pitt"
    titles = get(tmdb, "/movie/671/alternative_titles").json
    assert {"iso_3166_1": "US", "title": "Harry Potter and the Sorcerer's Stone", "type": ""} in (
        titles["titles"]
    )


def test_sparse_records_have_null_poster_empty_date_and_empty_credits(tmdb: TmdbStandin) -> None:
    body = get(tmdb, "/movie/1100001", append_to_response="credits").json
    assert body["title"] == "Dune: Part Three"
    assert body["poster_path"] is None and body["backdrop_path"] is None
    assert body["release_date"] == "" and body["status"] == "In Production"
    assert body["credits"]["cast"] == [] and body["imdb_id"] is None
    uncredited = get(tmdb, "/movie/1100004", append_to_response="credits,keywords").json
    assert uncredited["credits"] == {"cast": [], "crew": []}
    assert uncredited["keywords"] == {"keywords": []} and uncredited["runtime"] == 0


def test_tv_search_details_and_first_air_date_year(tmdb: TmdbStandin) -> None:
    both = get(tmdb, "/search/tv", query="the office").json["results"]
    assert [r["id"] for r in both] == [2316, 2996]  # by popularity: the US one first
    assert set(both[0]) == TV_RESULT_FIELDS
    uk = get(tmdb, "/search/tv", query="the office", first_air_date_year=2001).json["results"]
    assert [r["origin_country"] for r in uk] == [["GB"]]
    show = get(tmdb, "/tv/1396", append_to_response="credits,external_ids").json
    assert set(show) >= TV_DETAIL_FIELDS
    assert show["name"] == "Breaking Bad" and show["number_of_seasons"] == 5
    assert sum(s["episode_count"] for s in show["seasons"]) == show["number_of_episodes"]
    assert show["credits"]["cast"][0]["character"] == "Walter White"
    assert show["external_ids"]["imdb_id"] == "tt0903747"


def test_genre_lists(tmdb: TmdbStandin) -> None:
    movie = get(tmdb, "/genre/movie/list").json["genres"]
    assert {"id": 28, "name": "Action"} in movie and len(movie) == 19
    tv = get(tmdb, "/genre/tv/list").json["genres"]
    assert {"id": 10765, "name": "Sci-Fi & Fantasy"} in tv


def test_find_by_imdb_id_returns_movie_or_tv_results(tmdb: TmdbStandin) -> None:
    found = get(tmdb, "/find/tt0111161", external_source="imdb_id").json
    assert set(found) == {
        "movie_results", "person_results", "tv_results", "tv_episode_results",
        "tv_season_results",
    }  # fmt: skip
    assert [(m["id"], m["media_type"]) for m in found["movie_results"]] == [(278, "movie")]
    show = get(tmdb, "/find/tt0944947", external_source="imdb_id").json
    assert [(t["id"], t["media_type"]) for t in show["tv_results"]] == [(1399, "tv")]
    nothing = get(tmdb, "/find/tt0000000", external_source="imdb_id").json
    assert all(v == [] for v in nothing.values())
    assert_tmdb_error(
        get(tmdb, "/find/tt0111161"),
        422,
        5,
        "Invalid parameters: Your request parameters are incorrect.",
    )


# --- search semantics ----------------------------------------------------------------------


def titles_and_years(reply: Reply) -> list[tuple[str, str]]:
    return [(r["title"], r["release_date"][:4]) for r in reply.json["results"]]


def test_search_year_matches_any_release_primary_year_only_the_first(tmdb: TmdbStandin) -> None:
    # Spirited Away opened in Japan in 2001 and in the US in 2002.
    assert titles_and_years(get(tmdb, "/search/movie", query="spirited away", year=2002)) == [
        ("Spirited Away", "2001")
    ]
    assert (
        get(tmdb, "/search/movie", query="spirited away", primary_release_year=2002).json["results"]
        == []
    )
    remakes = get(tmdb, "/search/movie", query="the thing").json["results"]
    assert [r["id"] for r in remakes] == [1091, 60935, 1100002]  # ordered by popularity
    assert [
        r["id"] for r in get(tmdb, "/search/movie", query="The Thing", year=1982).json["results"]
    ] == [1091]
    dune = get(tmdb, "/search/movie", query="dune", primary_release_year=2021).json["results"]
    assert [r["id"] for r in dune] == [438631]


def test_search_ignores_case_accents_and_punctuation(tmdb: TmdbStandin) -> None:
    for query in ("AMELIE", "amélie", "Le Fabuleux Destin d'Amelie Poulain"):
        assert 194 in [r["id"] for r in get(tmdb, "/search/movie", query=query).json["results"]]
    for query, movie_id in (
        ("千と千尋の神隠し", 129),
        ("기생충", 496243),
        ("Cidade de Deus", 598),
        ("das leben der anderen", 582),
        ("face off", 754),
        ("WALL-E", 10681),
        ("blade runner 2049", 335984),
        ("2001 a space odyssey", 62),
        ("harry potter sorcerer's stone", 671),  # an alternative title
        ("crouching tiger hidden dragon", 146),
        ("1917", 530915),
    ):
        ids = [r["id"] for r in get(tmdb, "/search/movie", query=query).json["results"]]
        assert ids and ids[0] == movie_id, (query, ids)


def test_search_pages_twenty_results_at_a_time(tmdb: TmdbStandin) -> None:
    first = get(tmdb, "/search/movie", query="the").json
    total = first["total_results"]
    assert total > 40 and first["total_pages"] == -(-total // 20)
    assert len(first["results"]) == 20
    pops = [r["popularity"] for r in first["results"]]
    assert pops == sorted(pops, reverse=True)
    seen = {r["id"] for r in first["results"]}
    for page in range(2, first["total_pages"] + 1):
        body = get(tmdb, "/search/movie", query="the", page=page).json
        assert body["page"] == page
        seen |= {r["id"] for r in body["results"]}
    assert len(seen) == total
    past = get(tmdb, "/search/movie", query="the", page=first["total_pages"] + 1).json
    assert past["results"] == [] and past["total_results"] == total
    for bad in ("0", "501", "two"):
        assert_tmdb_error(
            get(tmdb, "/search/movie", query="the", page=bad),
            400,
            22,
            "Invalid page: Pages start at 1 and max at 500. They are expected to be an integer.",
        )


def test_search_without_a_query_finds_nothing(tmdb: TmdbStandin) -> None:
    assert get(tmdb, "/search/movie").json == {
        "page": 1,
        "results": [],
        "total_pages": 1,
        "total_results": 0,
    }
    assert get(tmdb, "/search/movie", query="zzzz no such film").json["total_results"] == 0


# --- errors --------------------------------------------------------------------------------

INVALID_KEY = "Invalid API key: You must be granted a valid key."
NOT_FOUND = "The resource you requested could not be found."


def test_missing_or_wrong_credentials_get_401_status_code_7(tmdb: TmdbStandin) -> None:
    url = f"{tmdb.base_url}/movie/550"
    assert_tmdb_error(fetch(url), 401, 7, INVALID_KEY)
    assert_tmdb_error(fetch(url + "?api_key=wrong"), 401, 7, INVALID_KEY)
    assert_tmdb_error(fetch(url, headers={"Authorization": "Bearer wrong"}), 401, 7, INVALID_KEY)
    # The v4 token is not a v3 key, nor the reverse.
    assert_tmdb_error(fetch(url + f"?api_key={TOKEN}"), 401, 7, INVALID_KEY)
    assert_tmdb_error(fetch(url, headers={"Authorization": f"Bearer {KEY}"}), 401, 7, INVALID_KEY)
    assert fetch(url + f"?api_key={KEY}").status == 200
    assert fetch(url, headers={"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_credentials_can_be_changed_or_dropped(tmdb: TmdbStandin) -> None:
    tmdb.configure(api_key="fresh", read_token=None)
    url = f"{tmdb.base_url}/movie/550"
    assert fetch(url + "?api_key=fresh").status == 200
    assert fetch(url, headers={"Authorization": f"Bearer {TOKEN}"}).status == 401
    assert tmdb.environ() == {"TMDB_BASE_URL": tmdb.base_url, "TMDB_API_KEY": "fresh"}
    tmdb.configure(api_key=None)
    assert fetch(url).status == 200


def test_unknown_ids_and_paths_get_404_status_code_34(tmdb: TmdbStandin) -> None:
    for path in ("/movie/999999999", "/movie/abc", "/tv/999999999", "/movie/550/videos", "/nope"):
        assert_tmdb_error(get(tmdb, path), 404, 34, NOT_FOUND)


def test_a_year_that_is_not_a_year_is_refused(tmdb: TmdbStandin) -> None:
    assert_tmdb_error(
        get(tmdb, "/search/movie", query="dune", year="nineteen"),
        422,
        5,
        "Invalid parameters: Your request parameters are incorrect.",
    )


# --- rate limit ----------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_then_accepts_again() -> None:
    with TmdbStandin(rate_limit=5, rate_window_s=1.0) as tmdb:
        replies = [get(tmdb, "/movie/550") for _ in range(5)]
        assert [r.status for r in replies] == [200] * 5
        assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["4", "3", "2", "1", "0"]
        refused = get(tmdb, "/movie/550")
        assert_tmdb_error(
            refused, 429, 25, "Your request count (6) is over the allowed limit of (5)."
        )
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["X-RateLimit-Limit"] == "5"
        wait_until(
            lambda: get(tmdb, "/movie/550").status == 200, timeout=10, what="the window to pass"
        )
        stats = tmdb.stats()
        assert stats["rate_limited"] >= 1
        assert stats["by_status"]["200"] == 6
        assert stats["requests"] == stats["by_status"]["200"] + stats["rate_limited"]


def test_without_a_rate_limit_there_are_no_limit_headers(tmdb: TmdbStandin) -> None:
    assert "X-RateLimit-Limit" not in get(tmdb, "/movie/550").headers


# --- faults --------------------------------------------------------------------------------


def test_scheduled_5xx_faults_answer_with_tmdbs_error_bodies(tmdb: TmdbStandin) -> None:
    tmdb.configure(fault_schedule=["500", "503", "504", "502", "ok"])
    assert_tmdb_error(
        get(tmdb, "/movie/550"), 500, 11, "Internal error: Something went wrong, contact TMDb."
    )
    assert_tmdb_error(
        get(tmdb, "/movie/550"),
        503,
        9,
        "Service offline: This service is temporarily offline, try again later.",
    )
    assert_tmdb_error(
        get(tmdb, "/movie/550"), 504, 24, "Your request to the backend server timed out. Try again."
    )
    gateway = get(tmdb, "/movie/550")
    assert gateway.status == 502 and gateway.headers["Content-Type"] == "text/html"
    assert b"502 Bad Gateway" in gateway.raw
    assert get(tmdb, "/movie/550").status == 200  # "ok" lets one through
    assert get(tmdb, "/movie/550").status == 200  # the schedule is used up
    assert tmdb.stats()["faults"] == {"500": 1, "502": 1, "503": 1, "504": 1}


def test_malformed_fault_sends_200_with_a_body_that_is_not_json(tmdb: TmdbStandin) -> None:
    tmdb.configure(fault_schedule=["malformed"])
    reply = get(tmdb, "/movie/550")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert int(reply.headers["Content-Length"]) == len(reply.raw)
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.raw)


def test_truncated_fault_closes_before_the_announced_length(tmdb: TmdbStandin) -> None:
    tmdb.configure(fault_schedule=["truncated"])
    with pytest.raises(http.client.IncompleteRead):
        get(tmdb, "/movie/550")
    assert get(tmdb, "/movie/550").status == 200


def test_hang_fault_outlasts_the_client_timeout_and_stop_ends_it() -> None:
    tmdb = TmdbStandin(hang_s=600).start()
    try:
        tmdb.configure(fault_schedule=["hang"])
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            fetch(f"{tmdb.base_url}/movie/550?api_key={KEY}", timeout=0.3)
        assert tmdb.stats()["in_flight"] == 1  # still held by the server
    finally:
        tmdb.stop()  # wakes the hung request instead of waiting 600 s
    assert tmdb.stats()["in_flight"] == 0
    assert tmdb.stats()["by_status"] == {"dropped": 1}


def test_latency_delays_answers_past_a_short_client_timeout(tmdb: TmdbStandin) -> None:
    tmdb.configure(latency_ms=[400, 500])
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        fetch(f"{tmdb.base_url}/movie/550?api_key={KEY}", timeout=0.05)
    tmdb.configure(latency_ms=0)
    assert get(tmdb, "/movie/550").status == 200


def test_fault_rate_draws_faults_reproducibly_with_a_seed() -> None:
    def statuses() -> list[int]:
        with TmdbStandin(fault_rate=0.5, fault_kinds=["503"], seed=7) as tmdb:
            return [get(tmdb, "/movie/550").status for _ in range(40)]

    first = statuses()
    assert set(first) == {200, 503}
    assert 8 <= first.count(503) <= 32
    assert statuses() == first


# --- transport -----------------------------------------------------------------------------


def test_gzip_when_asked_and_connections_are_kept_alive(tmdb: TmdbStandin) -> None:
    host, port = tmdb.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", f"/3/movie/603?api_key={KEY}", headers={"Accept-Encoding": "gzip"})
            response = conn.getresponse()
            assert response.getheader("Content-Encoding") == "gzip"
            assert json.loads(gzip.decompress(response.read()))["title"] == "The Matrix"
        assert tmdb.stats()["by_path"] == {"/3/movie/{id}": 3}
    finally:
        conn.close()


# --- control surface -----------------------------------------------------------------------


def test_config_endpoint_reads_and_changes_settings(tmdb: TmdbStandin) -> None:
    assert control(tmdb, "config").json["rate_limit"] == 0
    changed = control(tmdb, "config", {"rate_limit": 40, "latency_ms": [1, 2]})
    assert changed.status == 200
    assert changed.json["rate_limit"] == 40 and changed.json["latency_ms"] == [1.0, 2.0]
    assert tmdb.settings.rate_limit == 40


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rate_limt": 40}, "unknown setting 'rate_limt'"),
        ({"rate_limit": -1}, "rate_limit must be an integer >= 0"),
        ({"fault_rate": 1.5}, "fault_rate must be between 0 and 1"),
        ({"fault_kinds": ["418"]}, "fault_kinds: unknown entry '418'"),
        ({"fault_schedule": ["boom"]}, "fault_schedule: unknown entry 'boom'"),
        ({"latency_ms": [5, 1]}, "has high below low"),
        ({"api_key": ""}, "api_key must be a non-empty string or null"),
        ([1, 2], "the body must be a JSON object"),
    ],
)
def test_config_endpoint_refuses_bad_settings_naming_them(
    tmdb: TmdbStandin, body: object, message: str
) -> None:
    reply = control(tmdb, "config", body)
    assert reply.status == 400 and message in reply.json["error"]
    assert tmdb.settings.rate_limit == 0  # nothing applied


def test_constructor_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown setting 'latency'"):
        TmdbStandin(latency=5)
    with pytest.raises(ValueError, match="rate_window_s must be at least"):
        TmdbStandin(rate_window_s=0)


def test_stats_count_by_path_and_status_and_reset_clears_them(tmdb: TmdbStandin) -> None:
    get(tmdb, "/search/movie", query="heat")
    get(tmdb, "/movie/949")
    get(tmdb, "/movie/0")
    fetch(f"{tmdb.base_url}/movie/949")
    stats = control(tmdb, "stats").json
    assert stats["requests"] == 4
    assert stats["by_path"] == {"/3/movie/{id}": 3, "/3/search/movie": 1}
    assert stats["by_status"] == {"200": 2, "401": 1, "404": 1}
    assert control(tmdb, "reset", {}).json == {"reset": True}
    assert tmdb.stats()["requests"] == 0 and tmdb.stats()["by_path"] == {}
    assert control(tmdb, "nope").status == 404


def test_start_and_stop_are_idempotent() -> None:
    tmdb = TmdbStandin()
    tmdb.stop()  # before start: nothing to do
    with pytest.raises(RuntimeError, match="not running"):
        _ = tmdb.url
    assert tmdb.start() is tmdb.start()
    url = tmdb.url
    tmdb.stop()
    tmdb.stop()
    with pytest.raises(urllib.error.URLError):
        fetch(f"{url}/3/configuration?api_key={KEY}", timeout=2)


def test_module_runs_a_standin_in_the_foreground() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "cinejobs.tmdb_standin", "--quiet", "--rate-limit", "40"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("TMDB stand-in (not TMDB) at http://127.0.0.1:")
            base_url = first.split(" at ")[1].strip()
            assert fetch(f"{base_url}/movie/27205?api_key={KEY}").json["title"] == "Inception"
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0  # SIGTERM is a clean stop


# --- the bundled data ----------------------------------------------------------------------


def test_package_ships_the_data_and_the_demo_list() -> None:
    data = resources.files("cinejobs.tmdb_standin") / "data"
    for name in ("movies.json", "tv.json", "configuration.json", "genres.json", "demo_films.csv"):
        assert (data / name).is_file(), name
    catalogue = bundled()
    assert len(catalogue.movies) >= 250 and len(catalogue.shows) >= 20
    imdb_ids = [m["imdb_id"] for m in catalogue.movies.values() if m["imdb_id"]]
    assert len(imdb_ids) == len(set(imdb_ids))
    for movie in catalogue.movies.values():
        if movie["release_date"]:
            years = {
                d["release_date"][:4]
                for c in movie["release_dates"]["results"]
                for d in c["release_dates"]
            }
            assert movie["release_date"][:4] in years, movie["id"]


def test_remakes_with_the_same_title_are_all_there() -> None:
    catalogue = bundled()
    for title, years in (
        ("The Thing", {"1982", "2011"}),
        ("Dune", {"1984", "2021"}),
        ("A Star Is Born", {"1937", "1954", "1976", "2018"}),
        ("Total Recall", {"1990", "2012"}),
        ("Suspiria", {"1977", "2018"}),
    ):
        found = {
            m["release_date"][:4]
            for m in catalogue.movies.values()
            if m["title"] == title and m["imdb_id"]
        }
        assert years <= found, title


def read_letterboxd(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["Date", "Name", "Year", "Letterboxd URI", "Rating"]
        return list(reader)


def test_film_lists_are_letterboxd_exports_of_bundled_films(tmdb: TmdbStandin) -> None:
    demo_path = resources.files("cinejobs.tmdb_standin") / "data" / "demo_films.csv"
    with resources.as_file(demo_path) as demo_file:
        demo = read_letterboxd(demo_file)
    films = read_letterboxd(FIXTURES / "films_letterboxd.csv")
    assert len(demo) == 50 and len(films) == 200
    assert len({row["Letterboxd URI"] for row in films}) == 200
    # As in real exports, most names find their film at once and a few need the matcher's
    # fallbacks (misspellings, other countries' years); none is absent from the catalogue.
    direct = sum(
        bool(get(tmdb, "/search/movie", query=row["Name"]).json["results"]) for row in films
    )
    assert 180 <= direct < 200
    names = (FIXTURES / "release_names.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) == 50 and all(names)


def test_expected_matches_name_a_bundled_film_for_every_input() -> None:
    expected = json.loads((FIXTURES / "expected_matches.json").read_text(encoding="utf-8"))
    movies = bundled().movies
    films = read_letterboxd(FIXTURES / "films_letterboxd.csv")
    assert {row["Letterboxd URI"] for row in films} == set(expected["films_letterboxd.csv"])
    names = (FIXTURES / "release_names.txt").read_text(encoding="utf-8").splitlines()
    assert set(names) == set(expected["release_names.txt"])
    assert len(expected["demo_films.csv"]) == 50
    for key in ("films_letterboxd.csv", "release_names.txt", "demo_films.csv"):
        for movie_id in expected[key].values():
            assert movie_id in movies and movies[movie_id]["imdb_id"], (key, movie_id)
