"""Expands the hand-written film and TV tables in scripts/tmdb_standin_data/ into the TMDB-shaped
JSON the stand-in serves (python/cinejobs/tmdb_standin/data/). Run it after editing a table and
commit its output: the package ships the expanded data, not this script.

    .venv/bin/python scripts/build_tmdb_standin_data.py

Values the tables do not carry (person, keyword and credit ids, poster paths) are derived from
stable hashes, so re-running the script on unchanged tables reproduces the same files byte for
byte. Such values are plausible, not TMDB's.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "scripts" / "tmdb_standin_data"
OUT = ROOT / "python" / "cinejobs" / "tmdb_standin" / "data"

# Status is judged against a fixed day, not today, so the output does not change with the date.
REFERENCE_DAY = "2025-06-01"

MOVIE_FIELDS = 19
# "invented" only documents the row (a stand-in for TMDB's sparse user-added entries).
FLAGS = {"noposter", "nobackdrop", "invented"}
TV_FIELDS = 20

# TMDB's genre ids (GET /3/genre/movie/list and /3/genre/tv/list).
MOVIE_GENRES = {
    "Act": (28, "Action"),
    "Adv": (12, "Adventure"),
    "Ani": (16, "Animation"),
    "Com": (35, "Comedy"),
    "Cri": (80, "Crime"),
    "Doc": (99, "Documentary"),
    "Dra": (18, "Drama"),
    "Fam": (10751, "Family"),
    "Fan": (14, "Fantasy"),
    "His": (36, "History"),
    "Hor": (27, "Horror"),
    "Mus": (10402, "Music"),
    "Mys": (9648, "Mystery"),
    "Rom": (10749, "Romance"),
    "SF": (878, "Science Fiction"),
    "TVM": (10770, "TV Movie"),
    "Thr": (53, "Thriller"),
    "War": (10752, "War"),
    "Wes": (37, "Western"),
}
TV_GENRES = {
    "AA": (10759, "Action & Adventure"),
    "Ani": (16, "Animation"),
    "Com": (35, "Comedy"),
    "Cri": (80, "Crime"),
    "Doc": (99, "Documentary"),
    "Dra": (18, "Drama"),
    "Fam": (10751, "Family"),
    "Kid": (10762, "Kids"),
    "Mys": (9648, "Mystery"),
    "SFF": (10765, "Sci-Fi & Fantasy"),
    "War": (10768, "War & Politics"),
    "Wes": (37, "Western"),
}

COUNTRIES = {
    "AT": "Austria",
    "AU": "Australia",
    "BR": "Brazil",
    "CA": "Canada",
    "CN": "China",
    "CZ": "Czech Republic",
    "DE": "Germany",
    "DK": "Denmark",
    "ES": "Spain",
    "FR": "France",
    "GB": "United Kingdom",
    "HK": "Hong Kong",
    "IE": "Ireland",
    "IR": "Iran",
    "IT": "Italy",
    "JP": "Japan",
    "KR": "South Korea",
    "MX": "Mexico",
    "NL": "Netherlands",
    "NZ": "New Zealand",
    "PL": "Poland",
    "SE": "Sweden",
    "SU": "Soviet Union",
    "TW": "Taiwan",
    "US": "United States of America",
    "ZA": "South Africa",
}

# iso_639_1 -> (english_name, name in the language), as TMDB's spoken_languages give them.
LANGUAGES = {
    "cn": ("Cantonese", "广州话 / 廣州話"),
    "da": ("Danish", "Dansk"),
    "de": ("German", "Deutsch"),
    "en": ("English", "English"),
    "es": ("Spanish", "Español"),
    "fa": ("Persian", "فارسی"),
    "fr": ("French", "Français"),
    "it": ("Italian", "Italiano"),
    "ja": ("Japanese", "日本語"),
    "ko": ("Korean", "한국어/조선말"),
    "pt": ("Portuguese", "Português"),
    "ru": ("Russian", "Русский"),
    "sv": ("Swedish", "svenska"),
    "zh": ("Mandarin", "普通话"),
}

# The fields TMDB reports changes in (configuration.change_keys).
CHANGE_KEYS = [
    "adult", "air_date", "also_known_as", "alternative_titles", "biography", "birthday",
    "budget", "cast", "certifications", "character_names", "created_by", "crew", "deathday",
    "episode", "episode_number", "episode_run_time", "freebase_id", "freebase_mid", "general",
    "genres", "guest_stars", "homepage", "images", "imdb_id", "languages", "name", "network",
    "origin_country", "original_name", "original_title", "overview", "parts", "place_of_birth",
    "plot_keywords", "production_code", "production_companies", "production_countries",
    "releases", "revenue", "runtime", "season", "season_number", "season_regular",
    "spoken_languages", "status", "tagline", "title", "translations", "tvdb_id", "tvrage_id",
    "type", "video", "videos",
]  # fmt: skip

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def digest(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def image_path(*parts: object) -> str:
    """A TMDB-style image path: '/' + 27 base-62 characters + '.jpg'."""
    n = digest("image", *parts)
    chars = []
    for _ in range(27):
        n, r = divmod(n, 62)
        chars.append(BASE62[r])
    return "/" + "".join(chars) + ".jpg"


def credit_id(*parts: object) -> str:
    return f"{digest('credit', *parts):064x}"[:24]


def person_id(name: str) -> int:
    return 10_000 + digest("person", name) % 3_000_000


def keyword_id(name: str) -> int:
    return 1_000 + digest("keyword", name) % 300_000


def person_popularity(name: str) -> float:
    return round(0.6 + (digest("popularity", name) % 4000) / 100, 3)


def rows(path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("|")
        if len(fields) != width:
            sys.exit(f"{path.name}:{number}: {len(fields)} fields, expected {width}")
        yield number, fields


def split(text: str, sep: str = ";") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def genres(codes: str, table: dict[str, tuple[int, str]], where: str) -> list[dict[str, Any]]:
    out = []
    for code in split(codes, ","):
        if code not in table:
            sys.exit(f"{where}: unknown genre code {code!r}")
        gid, name = table[code]
        out.append({"id": gid, "name": name})
    return out


def countries(codes: str, where: str) -> list[str]:
    out = split(codes, ",")
    for code in out:
        if code not in COUNTRIES:
            sys.exit(f"{where}: unknown country {code!r}")
    return out


def language(code: str, where: str) -> dict[str, str]:
    if code not in LANGUAGES:
        sys.exit(f"{where}: unknown language {code!r}")
    english, native = LANGUAGES[code]
    return {"english_name": english, "iso_639_1": code, "name": native}


def cast_list(text: str, owner: str) -> list[dict[str, Any]]:
    cast = []
    for order, entry in enumerate(split(text)):
        name, _, character = entry.partition("=")
        cast.append(
            {
                "adult": False,
                "gender": 0,
                "id": person_id(name),
                "known_for_department": "Acting",
                "name": name,
                "original_name": name,
                "popularity": person_popularity(name),
                "profile_path": image_path("profile", name),
                "cast_id": order + 1,
                "character": character,
                "credit_id": credit_id(owner, name, "cast"),
                "order": order,
            }
        )
    return cast


def director_list(text: str, owner: str) -> list[dict[str, Any]]:
    return [
        {
            "adult": False,
            "gender": 0,
            "id": person_id(name),
            "known_for_department": "Directing",
            "name": name,
            "original_name": name,
            "popularity": person_popularity(name),
            "profile_path": image_path("profile", name),
            "credit_id": credit_id(owner, name, "Director"),
            "department": "Directing",
            "job": "Director",
        }
        for name in split(text)
    ]


def status_for(release_date: str) -> str:
    if not release_date:
        return "In Production"
    return "Released" if release_date <= REFERENCE_DAY else "Post Production"


def release_dates(
    release_date: str, origin: list[str], certification: str, others: str, where: str
) -> dict[str, Any]:
    """TMDB's release_dates: one entry per country, each with typed dated releases. The film's
    release_date is its primary release in its first production country; the US certification
    applies to every US release."""
    entries: list[tuple[str, str, int]] = []
    if release_date:
        entries.append((origin[0], release_date, 3))
    for item in split(others, ","):
        try:
            country, day, kind = item.split(":")
            entries.append((country, day, int(kind)))
        except ValueError:
            sys.exit(f"{where}: bad release {item!r} (want CC:YYYY-MM-DD:type)")
    by_country: dict[str, list[dict[str, Any]]] = {}
    for country, day, kind in sorted(entries, key=lambda e: (e[0], e[1], e[2])):
        dates = by_country.setdefault(country, [])
        if any(d["release_date"].startswith(day) and d["type"] == kind for d in dates):
            continue
        dates.append(
            {
                "certification": certification if country == "US" else "",
                "descriptors": [],
                "iso_639_1": "",
                "note": "",
                "release_date": f"{day}T00:00:00.000Z",
                "type": kind,
            }
        )
    return {
        "results": [
            {"iso_3166_1": country, "release_dates": dates} for country, dates in by_country.items()
        ]
    }


def alternative_titles() -> dict[int, list[dict[str, str]]]:
    out: dict[int, list[dict[str, str]]] = {}
    for _, (movie_id, country, title) in rows(TABLES / "alternative_titles.psv", 3):
        out.setdefault(int(movie_id), []).append(
            {"iso_3166_1": country, "title": title, "type": ""}
        )
    return out


def movies() -> list[dict[str, Any]]:
    alternatives = alternative_titles()
    out = []
    seen: set[int] = set()
    for path in sorted(TABLES.glob("films_*.psv")):
        for number, f in rows(path, MOVIE_FIELDS):
            where = f"{path.name}:{number}"
            (mid, imdb, title, original, lang, origin_codes, released, runtime, genre_codes,
             directors, cast, popularity, vote_average, vote_count, certification, others,
             keywords, overview, flags) = f  # fmt: skip
            movie_id = int(mid)
            if movie_id in seen:
                sys.exit(f"{where}: duplicate id {movie_id}")
            seen.add(movie_id)
            flag_set = set(split(flags, ","))
            if flag_set - FLAGS:
                sys.exit(f"{where}: unknown flags {sorted(flag_set - FLAGS)}; known: {FLAGS}")
            origin = countries(origin_codes, where)
            owner = f"movie/{movie_id}"
            out.append(
                {
                    "adult": False,
                    "backdrop_path": None
                    if "nobackdrop" in flag_set
                    else image_path("backdrop", movie_id),
                    "belongs_to_collection": None,
                    "budget": 0,
                    "genres": genres(genre_codes, MOVIE_GENRES, where),
                    "homepage": "",
                    "id": movie_id,
                    "imdb_id": imdb or None,
                    "origin_country": origin[:1],
                    "original_language": lang,
                    "original_title": original or title,
                    "overview": overview,
                    "popularity": float(popularity),
                    "poster_path": None
                    if "noposter" in flag_set
                    else image_path("poster", movie_id),
                    "production_companies": [],
                    "production_countries": [
                        {"iso_3166_1": c, "name": COUNTRIES[c]} for c in origin
                    ],
                    "release_date": released,
                    "revenue": 0,
                    "runtime": int(runtime),
                    "spoken_languages": [language(lang, where)],
                    "status": status_for(released),
                    "tagline": "",
                    "title": title,
                    "video": False,
                    "vote_average": float(vote_average),
                    "vote_count": int(vote_count),
                    # Sub-resources, served by /3/movie/{id}/<name> and append_to_response.
                    "alternative_titles": {"titles": alternatives.pop(movie_id, [])},
                    "credits": {
                        "cast": cast_list(cast, owner),
                        "crew": director_list(directors, owner),
                    },
                    "external_ids": {
                        "imdb_id": imdb or None,
                        "wikidata_id": None,
                        "facebook_id": None,
                        "instagram_id": None,
                        "twitter_id": None,
                    },
                    "keywords": {
                        "keywords": [{"id": keyword_id(k), "name": k} for k in split(keywords)]
                    },
                    "release_dates": release_dates(released, origin, certification, others, where),
                }
            )
    if alternatives:
        sys.exit(f"alternative_titles.psv: unknown movie ids {sorted(alternatives)}")
    return out


def seasons(show_id: int, count: int, episodes: int) -> list[dict[str, Any]]:
    """Seasons with the show's episodes spread evenly (the tables keep totals, not per-season
    counts)."""
    base, extra = divmod(episodes, count)
    return [
        {
            "air_date": None,
            "episode_count": base + (1 if n <= extra else 0),
            "id": 1_000_000 + digest("season", show_id, n) % 9_000_000,
            "name": f"Season {n}",
            "overview": "",
            "poster_path": image_path("season", show_id, n),
            "season_number": n,
            "vote_average": 0.0,
        }
        for n in range(1, count + 1)
    ]


def shows() -> list[dict[str, Any]]:
    out = []
    path = TABLES / "tv.psv"
    for number, f in rows(path, TV_FIELDS):
        where = f"{path.name}:{number}"
        (sid, imdb, name, original, lang, origin_codes, first_air, last_air, status, season_count,
         episode_count, run_time, genre_codes, creators, cast, networks, popularity, vote_average,
         vote_count, overview) = f  # fmt: skip
        show_id = int(sid)
        origin = countries(origin_codes, where)
        owner = f"tv/{show_id}"
        out.append(
            {
                "adult": False,
                "backdrop_path": image_path("backdrop", "tv", show_id),
                "created_by": [
                    {
                        "id": person_id(c),
                        "credit_id": credit_id(owner, c, "creator"),
                        "name": c,
                        "original_name": c,
                        "gender": 0,
                        "profile_path": image_path("profile", c),
                    }
                    for c in split(creators)
                ],
                "episode_run_time": [int(run_time)],
                "first_air_date": first_air,
                "genres": genres(genre_codes, TV_GENRES, where),
                "homepage": "",
                "id": show_id,
                "in_production": status == "Returning Series",
                "languages": [lang],
                "last_air_date": last_air,
                "name": name,
                "networks": [
                    {
                        "id": 1 + digest("network", n) % 9000,
                        "logo_path": image_path("logo", n),
                        "name": n,
                        "origin_country": origin[0],
                    }
                    for n in split(networks)
                ],
                "number_of_episodes": int(episode_count),
                "number_of_seasons": int(season_count),
                "origin_country": origin,
                "original_language": lang,
                "original_name": original or name,
                "overview": overview,
                "popularity": float(popularity),
                "poster_path": image_path("poster", "tv", show_id),
                "production_companies": [],
                "production_countries": [{"iso_3166_1": c, "name": COUNTRIES[c]} for c in origin],
                "seasons": seasons(show_id, int(season_count), int(episode_count)),
                "spoken_languages": [language(lang, where)],
                "status": status,
                "tagline": "",
                "type": "Miniseries"
                if int(season_count) == 1 and status == "Ended"
                else "Scripted",
                "vote_average": float(vote_average),
                "vote_count": int(vote_count),
                "credits": {"cast": cast_list(cast, owner), "crew": []},
                "external_ids": {
                    "imdb_id": imdb or None,
                    "freebase_mid": None,
                    "freebase_id": None,
                    "tvdb_id": None,
                    "tvrage_id": None,
                    "wikidata_id": None,
                    "facebook_id": None,
                    "instagram_id": None,
                    "twitter_id": None,
                },
                "keywords": {"results": []},
            }
        )
    return out


def configuration() -> dict[str, Any]:
    return {
        "change_keys": CHANGE_KEYS,
        "images": {
            "base_url": "http://image.tmdb.org/t/p/",
            "secure_base_url": "https://image.tmdb.org/t/p/",
            "backdrop_sizes": ["w300", "w780", "w1280", "original"],
            "logo_sizes": ["w45", "w92", "w154", "w185", "w300", "w500", "original"],
            "poster_sizes": ["w92", "w154", "w185", "w342", "w500", "w780", "original"],
            "profile_sizes": ["w45", "w185", "h632", "original"],
            "still_sizes": ["w92", "w185", "w300", "original"],
        },
    }


def genre_lists() -> dict[str, Any]:
    def listed(table: dict[str, tuple[int, str]]) -> list[dict[str, Any]]:
        return sorted(({"id": i, "name": n} for i, n in table.values()), key=lambda g: g["name"])

    return {"movie": {"genres": listed(MOVIE_GENRES)}, "tv": {"genres": listed(TV_GENRES)}}


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """A JSON array with one record a line: compact, yet a change shows as a one-line diff."""
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    films = movies()
    tv = shows()
    write_records(OUT / "movies.json", films)
    write_records(OUT / "tv.json", tv)
    for name, value in (("configuration.json", configuration()), ("genres.json", genre_lists())):
        (OUT / name).write_text(
            json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    print(f"wrote {len(films)} films and {len(tv)} shows to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
