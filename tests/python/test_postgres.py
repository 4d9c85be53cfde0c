"""PostgreSQL specifics, against a real server the tests start: transactional enqueue through
the caller's own psycopg connection, `cinejobs migrate`, and the errors users hit first."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

import cinejobs
from cinejobs import BrokerUnavailable, ConfigError, JobNotFound, UniqueConflict
from postgres_server import PostgresServer


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def migrated_url(pg: PostgresServer, schema: str) -> str:
    url = f"{pg.url()}?schema={schema}"
    cinejobs._core.migrate(url)
    return url


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cinejobs", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make_app(url: str) -> tuple[cinejobs.App, Any]:
    app = cinejobs.App(url)

    @app.task(name="pg.add", queue="pg")
    def add(a: int, b: int) -> int:
        return a + b

    return app, add


def test_transactional_enqueue_exists_only_if_the_transaction_commits(pg: PostgresServer) -> None:
    schema = new_schema()
    app, add = make_app(migrated_url(pg, schema))
    with psycopg.connect(pg.url()) as conn:
        rolled_back = ""
        with pytest.raises(RuntimeError, match="the request failed"), conn.transaction():
            rolled_back = cinejobs.postgres.enqueue(conn, add, 1, 2, schema=schema)
            raise RuntimeError("the request failed")
        with pytest.raises(JobNotFound):
            app.get_job(rolled_back)
        assert app.jobs() == []

        with conn.transaction():
            committed = cinejobs.postgres.enqueue(conn, add, 2, 3, schema=schema)
            with pytest.raises(JobNotFound):  # other connections see it only after the commit
                app.get_job(committed)
    assert [j["id"] for j in app.jobs()] == [committed]
    with app.worker(queues=["pg"], concurrency=2):
        assert app.get_job(committed).result(timeout=30) == 5
    app.close()


def test_transactional_enqueue_through_a_django_connection_follows_its_atomic_block(
    pg: PostgresServer,
) -> None:
    pytest.importorskip("django")
    schema = new_schema()
    app, _ = make_app(migrated_url(pg, schema))  # defines pg.add, which the worker runs
    script = Path(__file__).parent / "apps" / "django_enqueue.py"
    done = subprocess.run(
        [sys.executable, str(script), str(pg.port), schema],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rolled_back, committed = done.stdout.split()
    with pytest.raises(JobNotFound):
        app.get_job(rolled_back)
    assert [j["id"] for j in app.jobs()] == [committed]
    with app.worker(queues=["pg"], concurrency=2):
        assert app.get_job(committed).result(timeout=30) == 5
    app.close()


def test_transactional_enqueue_takes_the_schema_from_a_postgres_app_and_honours_unique_keys(
    pg: PostgresServer,
) -> None:
    schema = new_schema()
    app, add = make_app(migrated_url(pg, schema))
    with psycopg.connect(pg.url(), autocommit=True) as conn, conn.cursor() as cur:
        first = cinejobs.postgres.enqueue(cur, add, 1, 1, unique_key="film-42")
        with pytest.raises(UniqueConflict) as conflict:
            cinejobs.postgres.enqueue(conn, add, 1, 1, unique_key="film-42")
    assert conflict.value.existing_id == first
    assert app.get_job(first).info()["unique_key"] == "film-42"
    app.close()


def test_transactional_enqueue_refuses_arguments_json_cannot_carry(pg: PostgresServer) -> None:
    schema = new_schema()
    app, add = make_app(migrated_url(pg, schema))
    with (
        psycopg.connect(pg.url()) as conn,
        pytest.raises(TypeError, match="cannot be sent as JSON"),
    ):
        cinejobs.postgres.enqueue(conn, add, object(), 1)
    assert app.jobs() == []
    app.close()


def test_migrate_cli_applies_once_and_then_reports_up_to_date(pg: PostgresServer) -> None:
    url = f"{pg.url()}?schema={new_schema()}"
    first = cli("migrate", "--broker", url)
    assert first.returncode == 0, first.stderr
    assert "applied migration(s) 1" in first.stdout
    again = cli("migrate", "--broker", url)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    app, add = make_app(url)
    assert add.delay(1, 2).status() == "queued"
    app.close()


def test_an_unmigrated_schema_is_refused_with_what_to_run(pg: PostgresServer) -> None:
    url = f"{pg.url()}?schema={new_schema()}"
    with pytest.raises(ConfigError, match="cinejobs migrate"):
        cinejobs.App(url).connect()
    done = cli("status", "--broker", url)
    assert done.returncode == 2
    assert "cinejobs migrate" in done.stderr
    assert "Traceback" not in done.stderr


def test_wrong_password_and_missing_database_are_clear_errors(pg: PostgresServer) -> None:
    pg.sql("DO $$ BEGIN CREATE ROLE app LOGIN PASSWORD 'right'; EXCEPTION WHEN OTHERS THEN END $$")
    port = pg.port
    with pytest.raises(BrokerUnavailable, match="password"):
        cinejobs.App(f"postgresql://app:wrong@127.0.0.1:{port}/postgres").connect()
    with pytest.raises(BrokerUnavailable, match="nosuchdb"):
        cinejobs.App(f"postgresql://postgres@127.0.0.1:{port}/nosuchdb").connect()
