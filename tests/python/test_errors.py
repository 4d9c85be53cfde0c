"""Errors users hit most, each refused at the door with a clear message and exception type:
arguments JSON cannot carry, oversized payloads, bad broker URLs, unwritable databases, unknown
task names, misuse of the API."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest

import cinejobs
from cinejobs import (
    App,
    BrokerUnavailable,
    CinejobsError,
    ConfigError,
    InvalidPayload,
    JobNotFound,
    UnknownTask,
    current_job,
)

FAST: dict[str, Any] = {"lease": 1.5, "poll_interval": 0.01}


class Film:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "type_name"),
    [
        ((Film(),), {}, "Film"),
        (({1, 2},), {}, "set"),
        ((b"raw",), {}, "bytes"),
        ((), {"when": dt.datetime(2024, 1, 1)}, "datetime"),
        (([1, [2, {"deep": object()}]],), {}, "object"),
        (({(1, 2): "tuple key"},), {}, "tuple"),
    ],
)
def test_arguments_json_cannot_carry_raise_type_error_at_enqueue(
    app: App, args: tuple[Any, ...], kwargs: dict[str, Any], type_name: str
) -> None:
    @app.task(name="t.store")
    def store(*a: Any, **k: Any) -> None:
        return None

    with pytest.raises(TypeError) as error:
        store.delay(*args, **kwargs)
    assert "'t.store'" in str(error.value)
    assert type_name in str(error.value)
    with pytest.raises(TypeError, match=type_name):
        app.enqueue("t.store", list(args), kwargs)
    assert app.counts() == []  # nothing was stored


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(app: App, value: float) -> None:
    @app.task(name="t.num")
    def num(x: float) -> float:
        return x

    with pytest.raises(TypeError, match="NaN"):
        num.delay(value)
    with pytest.raises(TypeError, match=r"'t\.num'"):
        num.delay(x=[1.0, value])
    assert app.counts() == []


def test_args_must_be_a_sequence_and_kwargs_a_str_keyed_mapping(app: App) -> None:
    with pytest.raises(TypeError, match="list or tuple"):
        app.enqueue("t.x", "not a list")
    with pytest.raises(TypeError, match="dict"):
        app.enqueue("t.x", [], [("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str keys"):
        app.enqueue("t.x", [], {1: "a"})
    assert app.counts() == []


def test_payload_over_the_limit_is_invalid_payload(broker_url: str) -> None:
    app = App(broker_url, max_payload_bytes=100)

    @app.task(name="t.big")
    def big(text: str) -> None:
        return None

    with pytest.raises(InvalidPayload, match="100") as error:
        big.delay("x" * 200)
    assert isinstance(error.value, ValueError)
    assert "t.big" in str(error.value)
    big.delay("x" * 10)  # within the limit
    assert [n for _, _, n in app.counts()] == [1]


def test_payload_limit_from_the_url(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path}/limit.db?max_payload_bytes=64")
    with pytest.raises(InvalidPayload):
        app.enqueue("t.big", ["y" * 100])


@pytest.mark.parametrize(
    "url",
    [
        "",
        "jobs.db",
        "mysql://localhost/jobs",
        "sqlite:/jobs.db",
        "sqlite://jobs.db",
        "sqlite:///",
        "sqlite:///jobs.db?unknown_option=1",
        "sqlite:///jobs.db?max_payload_bytes=lots",
    ],
)
def test_malformed_broker_url_is_config_error(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        App(url).connect()
    assert isinstance(error.value, ValueError)
    assert str(error.value)
    assert not (tmp_path / "jobs.db").exists()


def test_unwritable_database_path_is_broker_unavailable(tmp_path: Path) -> None:
    # A path beneath a regular file cannot be created even by root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file")
    app = App(f"sqlite:///{blocker}/jobs.db")
    with pytest.raises(BrokerUnavailable) as error:
        app.connect()
    assert isinstance(error.value, ConnectionError)
    assert "jobs.db" in str(error.value)
    with pytest.raises(BrokerUnavailable):
        app.enqueue("t.x")


def test_the_broker_is_opened_on_first_use(tmp_path: Path) -> None:
    db = tmp_path / "lazy.db"
    app = App(f"sqlite:///{db}")

    @app.task(name="t.lazy")
    def lazy() -> None:
        return None

    assert not db.exists()
    lazy.delay()
    assert db.exists()


def test_unknown_task_at_the_worker_fails_the_job_without_retries(app: App) -> None:
    handle = app.enqueue("no.such.task", [1], max_attempts=3)
    assert handle.created
    with app.worker(**FAST):
        assert handle.wait(timeout=15) == "failed"
    info = handle.info()
    assert info["error"]["type"] == "UnknownTask"
    assert "no.such.task" in info["error"]["message"]
    assert info["attempt"] == 1  # not retried: no attempt can succeed


def test_strict_app_refuses_unknown_task_names_at_enqueue(broker_url: str) -> None:
    app = App(broker_url, strict=True)

    @app.task(name="t.known")
    def known() -> None:
        return None

    with pytest.raises(UnknownTask, match=r"no\.such\.task"):
        app.enqueue("no.such.task")
    with pytest.raises(UnknownTask):
        app.enqueue_many([("t.known",), ("no.such.task",)])
    assert app.enqueue("t.known").created
    assert app.enqueue("cinejobs.noop").created  # builtins are known to every worker
    assert [n for _, _, n in app.counts()] == [2]


def test_result_json_cannot_carry_fails_the_job_with_type_error(app: App) -> None:
    @app.task(name="t.bad_result", max_attempts=1)
    def bad_result() -> Any:
        return {"tags": {"a", "b"}}

    @app.task(name="t.nan_result", max_attempts=1)
    def nan_result() -> float:
        return math.nan

    h1, h2 = bad_result.delay(), nan_result.delay()
    with app.worker(**FAST):
        assert h1.wait(timeout=15) == "failed"
        assert h2.wait(timeout=15) == "failed"
    for h in (h1, h2):
        error = h.info()["error"]
        assert error["type"] == "TypeError"
        assert "cannot be stored as JSON" in error["message"]
    assert "set" in h1.info()["error"]["message"]


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"timeout": 0},
        {"timeout": -1},
        {"retry_backoff": -1},
        {"queue": ""},
        {"name": ""},
        {"unique": "not callable"},
    ],
)
def test_invalid_task_options_are_config_errors(app: App, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):

        @app.task(**options)
        def task() -> None:
            return None


def test_two_functions_under_one_task_name_are_refused(app: App) -> None:
    @app.task(name="t.same")
    def one() -> None:
        return None

    with pytest.raises(ConfigError, match=r"t\.same"):

        @app.task(name="t.same")
        def two() -> None:
            return None


def test_current_job_outside_a_job_is_a_clear_runtime_error(app: App) -> None:
    @app.task(name="t.needs_job")
    def needs_job() -> str:
        return current_job().id

    with pytest.raises(RuntimeError, match="outside a running job"):
        current_job()
    with pytest.raises(RuntimeError, match="outside a running job"):
        needs_job()  # called directly, not by a worker


def test_get_job_of_an_unknown_id_is_job_not_found(app: App) -> None:
    with pytest.raises(JobNotFound) as error:
        app.get_job("00000000-0000-4000-8000-000000000000")
    assert isinstance(error.value, LookupError)


def test_wait_and_result_raise_timeout_error_when_not_final_in_time(app: App) -> None:
    handle = app.enqueue("t.nobody_runs_this")
    with pytest.raises(TimeoutError, match=handle.id):
        handle.wait(timeout=0.05)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    assert handle.status() == "queued"


def test_enqueue_option_types_are_checked(app: App) -> None:
    with pytest.raises(TypeError, match="priority"):
        app.enqueue("t.x", priority="high")
    with pytest.raises(TypeError, match="run_at"):
        app.enqueue("t.x", run_at="tomorrow")
    with pytest.raises(ConfigError, match="delay"):
        app.enqueue("t.x", delay=-1)
    with pytest.raises(TypeError, match="unique key"):
        app.enqueue("t.x", unique_key=42)
    with pytest.raises(InvalidPayload):
        app.enqueue("t.x", max_attempts=0)
    assert app.counts() == []


def test_errors_share_one_base_class() -> None:
    for name in (
        "ConfigError",
        "BrokerUnavailable",
        "InvalidPayload",
        "UnknownTask",
        "JobNotFound",
        "UniqueConflict",
        "JobCancelled",
        "JobTimeout",
        "JobFailed",
    ):
        assert issubclass(getattr(cinejobs, name), CinejobsError)
    assert issubclass(cinejobs.JobTimeout, TimeoutError)
