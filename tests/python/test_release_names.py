"""Release-name parsing and title matching through cinejobs.tmdb: the whole fixture of
real-style names (tests/fixtures/release_names.jsonl) measured field by field, a core subset
that must be exactly right, and the wrappers' handling of TMDB-shaped and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cinejobs import tmdb

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_names.jsonl"

# The fields each fixture line states; every one is compared.
FIELDS = (
    "title",
    "year",
    "season",
    "episode",
    "resolution",
    "source",
    "codec",
    "audio",
    "group",
    "kind",
    "enrichable",
    "reason",
)

# Names whose every field must be right: one or more per rule the parser promises.
CORE = (
    "Inception.2010.1080p.BluRay.x264-SPARKS",
    "The.Matrix.1999.1080p.BluRay.DTS-HD.MA.5.1.x264-D-Z0N3",
    "Blade.Runner.2049.2017.1080p.BluRay.x264-SPARKS",
    "1917.2019.1080p.WEB-DL.DDP5.1.H264-FGT",
    "2001.A.Space.Odyssey.1968.1080p.BluRay.x264-AMIABLE",
    "Wonder.Woman.1984.2020.1080p.HMAX.WEB-DL.DDP5.1.Atmos.x264-EVO",
    "Dune.2021.2160p.UHD.BluRay.REMUX.DV.HDR.HEVC.TrueHD.7.1.Atmos-FGT",
    "The.Office.US.S03E12.720p.WEB-DL.DD5.1-NTb",
    "Friends.1x02.The.One.With.The.Sonogram.At.The.End.DVDRip.XviD-GRP",
    "Sherlock.S02E01E02.1080p.BluRay.x264-GRP",
    "Breaking.Bad.S01.1080p.BluRay.x264-ROVERS",
    "The.Wire.Season.2.720p.BluRay.x264-GRP",
    "The.Daily.Show.2023.01.15.Guest.Name.720p.WEB.h264-KOGi",
    "[SubsPlease] Jujutsu Kaisen - 24 (1080p) [A1B2C3D4].mkv",
    "S.W.A.T.2017.S05E01.720p.HDTV.x264-SYNCOPY",
    "The Matrix (1999) [1080p] [BluRay] [5.1] [YTS.MX]",
    "Oppenheimer 2023 1080p BluRay x265 - RARBG",
    "Uncut.Gems.2019.1080p.NF.WEB-DL.DDP5.1.x264-NTG",
    "It.2017.1080p.BluRay.x264-SPARKS",
    "Trailer.Park.Boys.S01E01.DVDRip.XviD-SAiNTS",
    "Amélie.2001.1080p.BluRay.x264-CiNEFiLE",
    "千と千尋の神隠し.2001.1080p.BluRay.x264-WiKi",
    "Movies/Inception.2010.1080p.BluRay.x264-SPARKS/inception.2010.1080p.bluray.x264-sparks.mkv",
    "www.Torrenting.com - Inception.2010.720p.BluRay.x264-GRP",
    "Drive.2011.1080p.BluRay.x264-SPARKS-Obfuscated",
    "inception.2010.720p.bluray.x264-sparks-sample.mkv",
    "Inception.2010.1080p.BluRay.x264-SPARKS.srt",
    "Dune.Part.Two.2024.Official.Trailer.1080p.WEB.h264",
    "Oppenheimer.2023.Behind.the.Scenes.1080p.WEB.h264-GRP",
    "Adobe.Photoshop.2023.v24.0.x64.Multilingual.Incl.Keygen-CORE",
    "Cyberpunk.2077-CODEX",
    "Interstellar.OST.2014.FLAC-GRP",
    "The Shining",
)


def _fixture() -> list[dict[str, Any]]:
    with FIXTURE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_the_fixture_is_large_varied_and_well_formed() -> None:
    rows = _fixture()
    assert len(rows) >= 300
    assert len({r["name"] for r in rows}) == len(rows), "duplicate names"
    for row in rows:
        assert set(row) == {"name", *FIELDS}, row["name"]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"movie", "episode", "season", "unknown"}
    reasons = {r["reason"] for r in rows} - {None}
    assert {"sample", "subtitles", "trailer", "extras", "software", "game", "audio"} <= reasons
    assert sum(1 for r in rows if not r["name"].isascii()) >= 15


def test_at_least_97_percent_of_fixture_fields_are_right(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = _fixture()
    right = dict.fromkeys(FIELDS, 0)
    misses: list[str] = []
    for row in rows:
        parsed = tmdb.parse_release_name(row["name"])
        for field in FIELDS:
            if parsed[field] == row[field]:
                right[field] += 1
            else:
                got = parsed[field]
                misses.append(f"{row['name']}: {field} expected {row[field]!r}, got {got!r}")
    total = len(rows) * len(FIELDS)
    accuracy = sum(right.values()) / total
    with capsys.disabled():
        print(f"\nrelease names: {len(rows)} names, {accuracy:.2%} of {total} fields right")
        for field in FIELDS:
            print(f"  {field:<11} {right[field] / len(rows):.1%}")
        for miss in misses:
            print(f"  miss: {miss}")
    assert accuracy >= 0.97, "\n".join(misses)


@pytest.mark.parametrize("name", CORE)
def test_core_names_are_parsed_exactly(name: str) -> None:
    expected = next(r for r in _fixture() if r["name"] == name)
    parsed = tmdb.parse_release_name(name)
    assert {f: parsed[f] for f in FIELDS} == {f: expected[f] for f in FIELDS}


def test_parse_release_name_returns_every_key() -> None:
    info = tmdb.parse_release_name("Dune.2021.1080p.WEB-DL.DDP5.1.Atmos.H.264-EVO")
    assert info == {
        "title": "Dune",
        "year": 2021,
        "season": None,
        "episode": None,
        "last_episode": None,
        "air_date": None,
        "resolution": "1080p",
        "source": "WEB-DL",
        "codec": "H.264",
        "audio": "DDP Atmos",
        "channels": "5.1",
        "group": "EVO",
        "tags": [],
        "kind": "movie",
        "enrichable": True,
        "reason": None,
    }


def test_parse_release_name_refuses_what_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="takes a str, not bytes"):
        tmdb.parse_release_name(b"Dune.2021")  # type: ignore[arg-type]


# TMDB search/movie results for "Heat", as the API returns them (trimmed).
HEAT_RESULTS = [
    {
        "id": 136795,
        "title": "The Heat",
        "original_title": "The Heat",
        "release_date": "2013-06-27",
        "popularity": 22.4,
    },
    {
        "id": 949,
        "title": "Heat",
        "original_title": "Heat",
        "release_date": "1995-12-15",
        "popularity": 48.0,
    },
    {"id": 205, "title": "Heat", "original_title": "Heat", "release_date": "", "popularity": 7.2},
]


def test_rank_candidates_reads_tmdb_movie_results() -> None:
    ranked = tmdb.rank_candidates("Heat", HEAT_RESULTS, year=1995)
    assert [r["id"] for r in ranked] == [949, 205, 136795]
    assert ranked[0]["year"] == 1995
    assert ranked[0]["confidence"] >= 0.95
    assert ranked[1]["year"] is None  # an empty release_date is an unknown year
    assert ranked[1]["year_score"] == 0.5


def test_rank_candidates_reads_tmdb_tv_results() -> None:
    results = [
        {
            "id": 1,
            "name": "The Office",
            "original_name": "The Office",
            "first_air_date": "2001-07-09",
        },
        {
            "id": 2316,
            "name": "The Office",
            "original_name": "The Office",
            "first_air_date": "2005-03-24",
        },
    ]
    ranked = tmdb.rank_candidates("The Office US", results, year=2005)
    assert ranked[0]["id"] == 2316
    assert 0.6 < ranked[0]["similarity"] < 1.0


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ({"title": "Heat"}, "integer 'id'"),
        ({"id": "949", "title": "Heat"}, "integer 'id'"),
        ({"id": 949}, "needs a 'title'"),
        ({"id": 949, "title": "Heat", "year": "1995"}, "year must be an int"),
        ({"id": 949, "title": "Heat", "release_date": 1995}, "release date must be a string"),
        ({"id": 949, "title": "Heat", "popularity": "high"}, "popularity must be a number"),
        (["Heat"], "must be a mapping"),
    ],
)
def test_rank_candidates_names_what_is_wrong_with_a_candidate(candidate: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tmdb.rank_candidates("Heat", [candidate])


def test_search_fallbacks_and_normalisation_wrappers() -> None:
    assert tmdb.search_fallbacks("The Thing", year=1982) == [
        {"title": "The Thing", "year": None},
        {"title": "Thing", "year": 1982},
        {"title": "Thing", "year": None},
    ]
    assert tmdb.search_fallbacks("Heat") == []
    assert tmdb.normalize_title("L'Été meurtrier") == "ete meurtrier"
    assert tmdb.title_similarity("Amelie", "Amélie") == 1.0
