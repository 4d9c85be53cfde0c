"""The Python face of schedules: declaring them (decorator, call, settings mapping), errors at
declaration that name the field, states and history after ticks, the built-in prune job, the
`cinejobs schedules` table and a worker run with --with-scheduler."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from helpers import spawn_cli, wait_until

import cinejobs
from cinejobs import _core
from cinejobs.cli import main
from cinejobs.errors import ConfigError
from cinejobs.schedules import parse_every


def test_periodic_registers_the_task_and_its_schedule() -> None:
    app = cinejobs.App("sqlite:///unused.db")

    @app.periodic(cron="0 2 * * *", tz="Europe/Paris", kwargs={"full": True})
    def nightly(full: bool = False) -> None: ...

    @app.periodic(every="10s", name="heartbeat")
    @app.task(queue="ops")
    def ping() -> None: ...

    assert set(app.tasks) == {nightly.name, ping.name}
    specs = app.declared_schedules
    assert specs[nightly.name].spec == "cron 0 2 * * * (Europe/Paris)"
    assert json.loads(specs[nightly.name].kwargs_json) == {"full": True}
    assert specs["heartbeat"].spec == "every 10s"
    assert specs["heartbeat"].queue == "ops"
    nxt = specs[nightly.name].next_tick(dt.datetime(2024, 3, 30, 12, tzinfo=dt.UTC))
    # 02:00 does not exist in Paris on 2024-03-31: the tick is when the gap ends.
    assert nxt == dt.datetime(2024, 3, 31, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "0 25 * * *"}, "cron field 'hour' (\"25\"): value 25 out of range 0-23"),
        ({"cron": "61 * * * *"}, "cron field 'minute' (\"61\")"),
        ({"cron": "* * * *"}, "has 4 fields"),
        ({"cron": "0 0 * * mon", "tz": "Europe/Pariss"}, "unknown time zone 'Europe/Pariss'"),
        ({"every": "10 parsecs"}, "is not an interval"),
        ({"every": 0}, "at least 1 ms"),
        ({"cron": "@daily", "every": "1s"}, "exactly one of cron=, every= or run_at="),
        ({}, "exactly one of cron=, every= or run_at=, got none"),
        ({"every": "1s", "tz": "UTC"}, "tz= applies to cron schedules only"),
        ({"every": "1s", "catch_up": -1}, "catch_up must be a whole number >= 0"),
        ({"every": "1s", "grace": -5}, "grace must be seconds >= 0"),
        ({"run_at": dt.datetime(2030, 1, 1)}, "has no time zone"),
    ],
)
def test_bad_schedules_fail_at_declaration_naming_what_is_wrong(
    options: dict[str, object], message: str
) -> None:
    app = cinejobs.App("sqlite:///unused.db")
    with pytest.raises(ConfigError) as info:
        app.schedule("some.task", name="bad", **options)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert "schedule 'bad'" in str(info.value) or "grace" in message


def test_two_different_schedules_cannot_share_a_name() -> None:
    app = cinejobs.App("sqlite:///unused.db")
    app.schedule("a.task", every="1m", name="x")
    app.schedule("a.task", every="1m", name="x")  # the same again is fine (module re-import)
    with pytest.raises(ConfigError, match="two schedules are named 'x'"):
        app.schedule("a.task", every="2m", name="x")


def test_configure_schedules_reads_a_settings_mapping() -> None:
    app = cinejobs.App("sqlite:///unused.db")
    specs = app.configure_schedules(
        {
            "report": {"task": "reports.nightly", "cron": "30 3 * * 1-5", "tz": "America/New_York"},
            "ping": {"task": "ops.ping", "every": dt.timedelta(seconds=30), "catch_up": 2},
        }
    )
    assert [s.name for s in specs] == ["report", "ping"]
    assert specs[1].spec == "every 30s" and specs[1].catch_up == 2
    with pytest.raises(ConfigError, match="unknown option"):
        app.configure_schedules({"bad": {"task": "t", "every": "1s", "cronn": "x"}})
    with pytest.raises(ConfigError, match="with a 'task' key"):
        app.configure_schedules({"bad": {"every": "1s"}})


def test_parse_every_units() -> None:
    assert parse_every("500ms") == 0.5
    assert parse_every("1.5m") == 90
    assert parse_every("2h") == 7200
    assert parse_every("1d") == 86400
    assert parse_every(dt.timedelta(minutes=5)) == 300


def test_states_history_and_outcome_after_ticks(app: cinejobs.App) -> None:
    runs: list[int] = []

    @app.periodic(every="1s", name="counter")
    def count() -> None:
        runs.append(1)

    start = dt.datetime.fromtimestamp(_core.now_ms() // 1000 * 1000 / 1000 + 0.5, tz=dt.UTC)
    scheduler = app.scheduler(prune_every=0)
    assert scheduler.run_due(start) == []  # a new schedule starts from now
    enqueued = scheduler.run_due(start + dt.timedelta(seconds=3))
    assert len(enqueued) == 1  # three missed ticks, coalesced (the default policy)
    with app.worker(concurrency=1):
        wait_until(lambda: runs, what="the tick's job to run")
        wait_until(
            lambda: app.schedules()[0].outcome == "succeeded", what="the outcome to be recorded"
        )
    (status,) = app.schedules()
    assert status.name == "counter" and status.spec == "every 1s"
    assert status.last_job_id == enqueued[0][1]
    assert status.last_tick == dt.datetime.fromtimestamp(enqueued[0][0] / 1000, tz=dt.UTC)
    assert app.schedule_history("counter") == [(status.last_tick, status.last_job_id)]


def test_the_builtin_prune_job_deletes_old_history(app: cinejobs.App) -> None:
    app.schedule("cinejobs.noop", every="1s", name="noop")
    scheduler = app.scheduler(prune_every=0)
    base = _core.now_ms() // 1000 * 1000 - 60_000
    scheduler.run_due(dt.datetime.fromtimestamp(base / 1000, tz=dt.UTC))
    for i in range(1, 4):
        scheduler.run_due(dt.datetime.fromtimestamp((base + i * 1000) / 1000, tz=dt.UTC))
    assert len(app.schedule_history("noop")) == 3
    # The job the built-in schedule enqueues: history older than 30 s goes.
    pruner = app.scheduler(prune_every=3600, history_retention=30)
    assert "cinejobs.prune" in pruner.names
    handle = app.enqueue("cinejobs.prune", kwargs={"history_retention_ms": 30_000})
    with app.worker(queues=["default"], concurrency=1):
        assert handle.wait(timeout=30) == "succeeded"
    assert handle.result()["ticks"] == 3
    assert app.schedule_history("noop") == []


def test_the_schedules_command_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    app = cinejobs.App(url)
    app.schedule("cinejobs.noop", every="1s", name="every-second")
    scheduler = app.scheduler(prune_every=0)
    scheduler.run_due(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3))
    scheduler.run_due()
    assert main(["schedules", "--broker", url]) == 0
    out = capsys.readouterr().out
    assert "every-second" in out and "(not declared in this app)" in out and "queued" in out
    assert main(["schedules", "--broker", url, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "every-second" and row["outcome"] == "queued"


@pytest.mark.slow
def test_a_worker_with_scheduler_enqueues_and_runs_the_ticks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    args = ["worker", "--app", "apps.schedules:app", "--broker", url, "--with-scheduler"]
    worker = spawn_cli(
        [*args, "--prune-every", "0", "--queues", "default"], tmp_path / "w.log", tmp_path
    )
    try:
        worker.wait_started()
        app = cinejobs.App(url)
        wait_until(
            lambda: len(app.jobs(task="apps.schedules.tick", state="succeeded")) >= 2,
            timeout=30,
            what="two ticks run by the worker",
        )
    finally:
        worker.terminate()
    assert worker.wait() == 0, worker.output()
    assert "scheduler running" in worker.output()
