"""Which failures are retried: arguments checked at enqueue, a call with arguments the function
does not take failed at once, `retry_on` / `dont_retry_on`, and `raise cinejobs.Retry(delay=)`;
in thread mode and in process mode, on a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import StartCliWorker

import cinejobs
from cinejobs.errors import ConfigError


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


@pytest.fixture
def app(tmp_path: Path) -> Iterator[cinejobs.App]:
    application = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    yield application
    application.close()


def test_enqueue_refuses_arguments_the_function_does_not_take(app: cinejobs.App) -> None:
    @app.task(name="add")
    def add(a: int, b: int = 1) -> int:
        return a + b

    with pytest.raises(TypeError, match=r"task 'add' cannot be called with these arguments"):
        add.delay()
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'c'"):
        add.enqueue([1], {"c": 2})
    with pytest.raises(TypeError, match=r"it takes add\(a, b=1\)"):
        app.enqueue("add", [1, 2, 3])
    assert app.jobs() == [], "a refused enqueue stored nothing"
    assert add.delay(1).id  # a call that fits is enqueued


def test_a_call_that_does_not_fit_the_function_is_not_retried(app: cinejobs.App) -> None:
    @app.task(name="takes_one", max_attempts=3, retry_backoff=0)
    def takes_one(x: int) -> int:
        return x

    # A producer that does not know the task's signature (another service, an old release).
    other = cinejobs.App(app.broker_url)
    handle = other.enqueue("takes_one", [1, 2])
    with app.worker(["default"]):
        assert handle.wait(timeout=30) == "failed"
    job = handle.info()
    assert job["attempt"] == 1, "an argument TypeError was retried"
    assert job["error"]["type"] == "TypeError"
    other.close()


def test_a_typeerror_inside_the_function_is_still_retried(app: cinejobs.App) -> None:
    @app.task(name="inner_typeerror", max_attempts=2, retry_backoff=0)
    def inner_typeerror() -> None:
        raise TypeError("a bug inside, not a bad call")

    handle = inner_typeerror.delay()
    with app.worker(["default"]):
        assert handle.wait(timeout=30) == "failed"
    assert handle.info()["attempt"] == 2


def test_dont_retry_on_fails_at_once_and_retry_on_retries_only_those(app: cinejobs.App) -> None:
    @app.task(name="fatal", max_attempts=3, retry_backoff=0, dont_retry_on=(Fatal,))
    def fatal() -> None:
        raise Fatal("no point trying again")

    @app.task(name="picky", max_attempts=3, retry_backoff=0, retry_on=(Flaky,))
    def picky(kind: str) -> None:
        raise Flaky("try again") if kind == "flaky" else ValueError("not a flaky error")

    handles = {
        "fatal": fatal.delay(),
        "picky_flaky": picky.delay("flaky"),
        "picky_other": picky.delay("other"),
    }
    with app.worker(["default"]):
        for h in handles.values():
            assert h.wait(timeout=30) == "failed"
    attempts = {name: h.info()["attempt"] for name, h in handles.items()}
    assert attempts == {"fatal": 1, "picky_flaky": 3, "picky_other": 1}


def test_raise_retry_runs_the_job_again_after_its_delay(app: cinejobs.App) -> None:
    @app.task(name="until_ready", max_attempts=5, retry_backoff=60)
    def until_ready() -> int:
        job = cinejobs.current_job()
        if job.attempt < 3:
            raise cinejobs.Retry(delay=0.2, reason=f"not ready at attempt {job.attempt}")
        return job.attempt

    handle = until_ready.delay()
    started = time.monotonic()
    with app.worker(["default"], poll_interval=0.01):
        assert handle.result(timeout=30) == 3
    # Two retries 0.2 s apart, not the task's 60 s backoff.
    assert time.monotonic() - started < 30
    assert handle.info()["attempt"] == 3


def test_retry_without_attempts_left_ends_failed_with_its_reason(app: cinejobs.App) -> None:
    @app.task(name="always_later", max_attempts=2)
    def always_later() -> None:
        raise cinejobs.Retry(delay=0, reason="upstream busy")

    handle = always_later.delay()
    with app.worker(["default"], poll_interval=0.01):
        assert handle.wait(timeout=30) == "failed"
    job = handle.info()
    assert (job["attempt"], job["error"]["type"], job["error"]["message"]) == (
        2,
        "Retry",
        "upstream busy",
    )


def test_retry_policy_holds_in_process_mode(
    tmp_path: Path, start_cli_worker: StartCliWorker
) -> None:
    url = f"sqlite:///{tmp_path}/pm.db"
    client = cinejobs.App(url)
    bad_call = client.enqueue("pm.pid", [1, 2, 3], max_attempts=3)
    worker = start_cli_worker(url, "apps.process_mode:app", extra=["--processes", "1"])
    worker.wait_started(60)
    assert bad_call.wait(timeout=30) == "failed"
    assert bad_call.info()["attempt"] == 1, "the child's failure action did not cross"
    worker.terminate()
    assert worker.wait(30) == 0
    client.close()


def test_bad_retry_options_are_refused(app: cinejobs.App) -> None:
    with pytest.raises(ConfigError, match="dont_retry_on must be exception classes"):
        app.task(name="x", dont_retry_on=("ValueError",))(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Retry"):
        cinejobs.Retry(delay=-1)
