"""The Batcher from Python: exactly-once delivery from many threads, a failing sink that loses
nothing, back-pressure, flushing on worker stop and on SIGTERM, and the PostgreSQL table and
Elasticsearch sinks against a real PostgreSQL and a stand-in that follows the _bulk format."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from es_standin import ElasticsearchStandIn
from helpers import wait_until

import cinejobs
from cinejobs.batch import (
    Batcher,
    ElasticsearchSink,
    Failed,
    PostgresDeadLetter,
    PostgresSink,
    Retry,
)

TESTS_DIR = Path(__file__).resolve().parent


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# Core behaviour, with callable sinks.


def test_items_from_eight_threads_arrive_exactly_once() -> None:
    received: list[int] = []

    def sink(items: list[dict[str, int]]) -> None:
        received.extend(item["id"] for item in items)

    threads, per_thread = 8, 12_500
    with Batcher(sink, max_items=500, capacity=2_000) as batcher:

        def produce(t: int) -> None:
            for n in range(per_thread):
                batcher.add({"id": t * per_thread + n})

        producers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for p in producers:
            p.start()
        for p in producers:
            p.join()
    assert len(received) == threads * per_thread
    assert sorted(received) == list(range(threads * per_thread))
    stats = batcher.stats()
    assert stats["delivered"] == threads * per_thread
    assert stats["pending"] == 0


def test_a_sink_failing_half_its_calls_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    stored: list[int] = []
    calls = {"n": 0, "failed": 0}

    def flaky(items: list[dict[str, int]]) -> list[Any] | None:
        calls["n"] += 1
        if rng.random() < 0.5:
            calls["failed"] += 1
            raise ConnectionError("upstream went away")
        # Of the calls that get through, some items are refused one by one as well.
        verdicts: list[Any] = []
        for item in items:
            if item["id"] % 97 == 0:
                verdicts.append(Retry("busy"))
            else:
                stored.append(item["id"])
                verdicts.append(None)
        return verdicts

    dead = tmp_path / "dead.jsonl"
    total = 5_000
    with Batcher(
        flaky,
        max_items=100,
        max_attempts=3,
        retry_backoff=0.001,
        retry_backoff_max=0.002,
        dead_letter=dead,
    ) as batcher:
        for n in range(total):
            batcher.add({"id": n})
    dead_ids = [entry["item"]["id"] for entry in read_jsonl(dead)]
    assert calls["failed"] > calls["n"] // 4  # the sink really failed about half its calls
    assert dead_ids, "some items must have run out of attempts"
    assert len(stored) == len(set(stored)), "an item reached the sink twice"
    assert not set(stored) & set(dead_ids), "an item was both delivered and dead-lettered"
    assert sorted(stored + dead_ids) == list(range(total)), "an item was lost"
    stats = batcher.stats()
    assert stats["delivered"] == len(stored)
    assert stats["dead_lettered"] == len(dead_ids)
    assert stats["pending"] == 0 and stats["undelivered"] == 0
    assert all(entry["attempts"] == 3 for entry in read_jsonl(dead))


def test_failed_verdicts_go_to_the_dead_letter_at_once(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"

    def picky(items: list[dict[str, int]]) -> list[Any]:
        return [Failed("odd") if item["n"] % 2 else None for item in items]

    with Batcher(picky, max_items=10, dead_letter=dead) as batcher:
        for n in range(10):
            batcher.add({"n": n})
    entries = read_jsonl(dead)
    assert [e["item"]["n"] for e in entries] == [1, 3, 5, 7, 9]
    assert {e["error"] for e in entries} == {"odd"}
    assert {e["attempts"] for e in entries} == {1}


def test_without_a_dead_letter_undeliverable_items_are_kept_and_counted() -> None:
    with Batcher(lambda items: [Failed("no") for _ in items], max_items=2) as batcher:
        batcher.add({"a": 1})
        batcher.add({"a": 2})
        assert batcher.flush(timeout=10)
    assert batcher.stats()["undelivered"] == 2
    assert [json.loads(u["item"]) for u in batcher.undelivered()] == [{"a": 1}, {"a": 2}]


def test_add_raises_when_full_without_blocking() -> None:
    gate = threading.Event()

    def slow(items: list[Any]) -> None:
        gate.wait(20)

    batcher = Batcher(slow, max_items=2, capacity=4)
    try:
        for n in range(4):
            batcher.add(n)
        with pytest.raises(cinejobs.BatcherFull, match="full"):
            batcher.add(4, block=False)
        with pytest.raises(cinejobs.BatcherFull):
            batcher.add(4, timeout=0.05)
    finally:
        gate.set()
        batcher.close()
    assert batcher.stats()["delivered"] == 4
    with pytest.raises(cinejobs.BatcherClosed):
        batcher.add(5)


def test_flush_on_demand_and_on_age() -> None:
    got: list[int] = []
    with Batcher(got.extend, max_items=1000, max_age=0.05) as batcher:
        batcher.add(1)
        wait_until(lambda: got == [1], what="the age trigger")
        batcher.add(2)
        assert batcher.flush(timeout=10)
        assert got == [1, 2]


def test_bad_options_and_sinks_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_items"):
        Batcher(print, max_items=0)
    with pytest.raises(cinejobs.ConfigError, match="capacity"):
        Batcher(print, max_items=100, capacity=10)
    with pytest.raises(TypeError, match="sink must be"):
        Batcher(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dead_letter"):
        Batcher(print, dead_letter=3)  # type: ignore[arg-type]
    with Batcher(print) as batcher:
        with pytest.raises(TypeError, match="not JSON serializable"):
            batcher.add(object())
        with pytest.raises(ValueError, match="JSON compliant"):
            batcher.add({"rating": float("nan")})
        assert batcher.stats()["added"] == 0


def test_a_batcher_opened_while_a_worker_runs_is_flushed_when_it_stops(tmp_path: Path) -> None:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    got: list[int] = []
    try:
        worker = app.worker(concurrency=1)
        worker.start()
        batcher = Batcher(got.extend, max_items=1000, max_age=3600)
        batcher.add_many([1, 2])
        assert got == []
        worker.stop()
        assert got == [1, 2]
        assert batcher.closed
    finally:
        app.close()


@pytest.mark.slow
def test_sigterm_delivers_a_half_full_buffer(
    postgres_server: Any, pg_table: tuple[str, str], tmp_path: Path
) -> None:
    url, table = pg_table
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    log = tmp_path / "producer.log"
    with (
        log.open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "apps.batch_producer", url, table, "250"],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().split() == ["ready", "250"], log.read_text()
            assert count_rows(url, table) == 0  # still buffered: no limit was reached
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == -signal.SIGTERM, log.read_text()  # as SIGTERM ends
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert count_rows(url, table) == 250
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT id, title FROM {table} ORDER BY id").fetchall()
    assert rows[0] == (0, "movie 0") and rows[-1] == (249, "movie 249")


# The PostgreSQL table sink.


@pytest.fixture
def pg_table(postgres_server: Any) -> Iterator[tuple[str, str]]:
    """A fresh schema with a table movies(id int primary key, title text not null, year int,
    tags jsonb, added timestamptz default now()); yields (url, "schema.movies")."""
    url = postgres_server.url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.movies (id integer PRIMARY KEY, title text NOT NULL, "
            "year integer, tags jsonb, added timestamptz NOT NULL DEFAULT now())"
        )
    yield url, f"{schema}.movies"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "insert"])
def test_postgres_sink_writes_rows_by_column_name(pg_table: tuple[str, str], copy: bool) -> None:
    url, table = pg_table
    movies = [
        {"id": 1, "title": "Alien", "year": 1979, "tags": ["space", "horror"], "extra": "x"},
        {"id": 2, "title": "Tab\there, new\nline \\ back", "year": None},
        {"id": 3, "title": "Amélie"},
    ]
    with Batcher(PostgresSink(url, table, copy=copy), max_items=10) as batcher:
        for movie in movies:
            batcher.add(movie)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT id, title, year, tags, added IS NOT NULL FROM {table} ORDER BY id"
        ).fetchall()
    assert rows == [
        (1, "Alien", 1979, ["space", "horror"], True),
        (2, "Tab\there, new\nline \\ back", None, None, True),
        (3, "Amélie", None, None, True),
    ]


def test_postgres_sink_upserts_by_key(pg_table: tuple[str, str]) -> None:
    url, table = pg_table
    with Batcher(PostgresSink(url, table, key="id"), max_items=10) as batcher:
        batcher.add({"id": 1, "title": "first", "year": 1})
        batcher.add({"id": 2, "title": "two"})
        batcher.add({"id": 1, "title": "second", "year": 2})  # same batch, same key
        batcher.flush()
        batcher.add({"id": 2, "title": "two again", "year": 3})
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT id, title, year FROM {table} ORDER BY id").fetchall()
    assert rows == [(1, "second", 2), (2, "two again", 3)]
    assert batcher.stats()["delivered"] == 4


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "insert"])
def test_postgres_sink_dead_letters_only_the_bad_rows(
    pg_table: tuple[str, str], copy: bool, tmp_path: Path
) -> None:
    url, table = pg_table
    dead = tmp_path / "dead.jsonl"
    with Batcher(PostgresSink(url, table, copy=copy), max_items=10, dead_letter=dead) as batcher:
        batcher.add({"id": 1, "title": "good"})
        batcher.add({"id": 2, "title": "bad year", "year": "nineteen"})  # not an integer
        batcher.add({"id": 3})  # title is NOT NULL
        batcher.add([1, 2])  # not an object
        batcher.add({"id": 4, "title": "also good"})
    assert count_rows(url, table) == 2
    errors = {json.dumps(e["item"]): e["error"] for e in read_jsonl(dead)}
    assert set(errors) == {
        json.dumps({"id": 2, "title": "bad year", "year": "nineteen"}),
        json.dumps({"id": 3}),
        json.dumps([1, 2]),
    }
    assert "integer" in errors[json.dumps({"id": 2, "title": "bad year", "year": "nineteen"})]
    assert (
        "not-null" in errors[json.dumps({"id": 3})] or "null value" in errors[json.dumps({"id": 3})]
    )
    assert "not a JSON object" in errors[json.dumps([1, 2])]


def test_postgres_dead_letter_table(pg_table: tuple[str, str]) -> None:
    url, table = pg_table
    schema = table.split(".")[0]
    dead = PostgresDeadLetter(url, f"{schema}.dead")
    with Batcher(PostgresSink(url, table), max_items=10, dead_letter=dead) as batcher:
        batcher.add({"id": 1})
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT item, error, attempts FROM {schema}.dead").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == {"id": 1} and "title" in rows[0][1] and rows[0][2] == 1


def test_postgres_sink_refuses_a_missing_table_or_key(pg_table: tuple[str, str]) -> None:
    url, table = pg_table
    schema = table.split(".")[0]
    with pytest.raises(cinejobs.ConfigError, match="no table"):
        PostgresSink(url, f"{schema}.nope")
    with pytest.raises(cinejobs.ConfigError, match="not a column"):
        PostgresSink(url, table, key="imdb_id")
    with pytest.raises(cinejobs.ConfigError, match="plain identifier"):
        PostgresSink(url, "movies; DROP TABLE x")


# The Elasticsearch sink, against the stand-in.


@pytest.fixture
def es() -> Iterator[ElasticsearchStandIn]:
    standin = ElasticsearchStandIn().start()
    yield standin
    standin.close()


def test_elasticsearch_sink_indexes_documents_in_bulk(es: ElasticsearchStandIn) -> None:
    sink = ElasticsearchSink(es.url, "movies", id_field="tmdb_id")
    with Batcher(sink, max_items=50) as batcher:
        for n in range(120):
            batcher.add({"tmdb_id": n, "title": f"movie {n}", "plot": "line one\nline two"})
    assert es.requests == 3
    assert len(es.docs["movies"]) == 120
    assert es.docs["movies"]["7"] == {
        "tmdb_id": 7,
        "title": "movie 7",
        "plot": "line one\nline two",
    }
    assert set(es.writes.values()) == {1}


def test_elasticsearch_sink_retries_only_rejected_items(
    es: ElasticsearchStandIn, tmp_path: Path
) -> None:
    es.faults.reject_item_times = {"3": 1, "5": 2}  # per-item 429s
    es.faults.mapping_error = lambda doc: doc.get("year") == "unknown"  # per-item 400
    dead = tmp_path / "dead.jsonl"
    sink = ElasticsearchSink(es.url, "movies", id_field="tmdb_id")
    with Batcher(sink, max_items=10, retry_backoff=0.001, dead_letter=dead) as batcher:
        for n in range(10):
            batcher.add({"tmdb_id": n, "year": "unknown" if n == 8 else 2000 + n})
    assert sorted(es.docs["movies"], key=int) == [str(n) for n in range(10) if n != 8]
    # Each accepted document was written once; only the rejected ones were sent again.
    assert set(es.writes.values()) == {1}
    assert es.attempts["3"] == 2 and es.attempts["5"] == 3 and es.attempts["0"] == 1
    [entry] = read_jsonl(dead)
    assert entry["item"]["tmdb_id"] == 8
    assert "mapper_parsing_exception" in entry["error"] and "HTTP 400" in entry["error"]
    stats = batcher.stats()
    assert stats["delivered"] == 9 and stats["dead_lettered"] == 1 and stats["retried"] == 3


def test_elasticsearch_sink_retries_a_rejected_request(es: ElasticsearchStandIn) -> None:
    es.faults.reject_requests = 2  # whole-request 429s
    sink = ElasticsearchSink(es.url, "movies")
    with Batcher(sink, max_items=5, retry_backoff=0.001) as batcher:
        for n in range(5):
            batcher.add({"n": n})
    assert es.requests == 3
    assert sorted(d["n"] for d in es.docs["movies"].values()) == [0, 1, 2, 3, 4]
    assert batcher.stats()["retried"] == 10


def test_elasticsearch_sink_waits_as_long_as_retry_after_asks(es: ElasticsearchStandIn) -> None:
    es.faults.reject_requests = 1
    es.faults.retry_after = 1
    sink = ElasticsearchSink(es.url, "movies")
    with Batcher(sink, max_items=5, retry_backoff=0.001, retry_backoff_max=0.001) as batcher:
        batcher.add({"n": 1})
        started = time.monotonic()
        assert batcher.flush(timeout=30)
        waited = time.monotonic() - started
    # A lower bound only: the batcher's own backoff (1 ms) was not what it waited.
    assert waited >= 0.95
    assert es.requests == 2 and len(es.docs["movies"]) == 1


def test_elasticsearch_sink_retries_while_the_server_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens there: every try fails in transport, and the items end in the dead letter.
    dead = tmp_path / "dead.jsonl"
    sink = ElasticsearchSink("http://127.0.0.1:9", "movies", timeout=2.0)
    with Batcher(sink, max_items=5, max_attempts=2, retry_backoff=0.001, dead_letter=dead) as b:
        b.add({"n": 1})
    [entry] = read_jsonl(dead)
    assert entry["attempts"] == 2 and "no response" in entry["error"]


def test_elasticsearch_standin_refuses_malformed_bulk_bodies(es: ElasticsearchStandIn) -> None:
    def post(body: bytes, content_type: str = "application/x-ndjson") -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{es.url}/movies/_bulk", data=body, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = post(b'{"index":{}}\n{"a":1}')  # no final newline
    assert status == 400 and body["error"]["type"] == "illegal_argument_exception"
    status, body = post(b'{"upsert":{}}\n{"a":1}\n')  # not an action
    assert status == 400 and "Malformed action/metadata" in body["error"]["reason"]
    status, body = post(b'{"index":{}}\n{"a":\n')  # source is not JSON
    assert status == 400 and body["error"]["type"] == "x_content_parse_exception"
    status, _ = post(b'{"index":{}}\n{"a":1}\n', content_type="text/plain")
    assert status == 406
    status, body = post(b'{"index":{"_id":"1"}}\n{"a":1}\n{"delete":{"_id":"2"}}\n')
    assert status == 200 and body["errors"] is False
    assert [next(iter(i)) for i in body["items"]] == ["index", "delete"]
    assert body["items"][0]["index"]["status"] == 201
    assert body["items"][1]["delete"]["result"] == "not_found"


def test_elasticsearch_sink_refuses_a_bad_index_name() -> None:
    with pytest.raises(cinejobs.ConfigError, match="index name"):
        ElasticsearchSink("http://127.0.0.1:9200", "Movies")
    with pytest.raises(cinejobs.ConfigError, match="http"):
        ElasticsearchSink("127.0.0.1:9200", "movies")


@pytest.mark.slow
def test_a_cli_worker_stopped_by_sigterm_delivers_what_its_jobs_batched(
    start_cli_worker: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    out = tmp_path / "collected.jsonl"
    app = cinejobs.App(url)
    try:
        handles = [app.enqueue("batch.collect", args=[str(out), n]) for n in range(20)]
        worker = start_cli_worker(url, "apps.batch_tasks:app", concurrency=2)
        worker.wait_started()
        for handle in handles:
            handle.wait(timeout=30)
        assert not out.exists()  # every item is still in the batcher's buffer
        worker.signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=60) == 0, worker.output()
    finally:
        app.close()
    assert sorted(json.loads(line)["n"] for line in out.read_text().splitlines()) == list(range(20))
