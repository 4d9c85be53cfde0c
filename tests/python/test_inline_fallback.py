"""App(inline_fallback=True): when the broker cannot take a job, the job runs in the caller's
process instead, loudly; off by default. The broker is a Redis port nothing listens on."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

import cinejobs
from cinejobs import BrokerUnavailable, JobFailed


def dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0?timeout_ms=200"


def make_app(inline_fallback: bool) -> tuple[cinejobs.App, Any, Any]:
    app = cinejobs.App(dead_redis_url(), inline_fallback=inline_fallback)

    @app.task(name="inline.add", max_attempts=5)
    def add(a: int, b: int) -> dict[str, int]:
        job = cinejobs.current_job()
        job.progress(1.0, step="added", message=f"{a}+{b}")
        return {"sum": a + b, "attempt": job.attempt}

    @app.task(name="inline.boom")
    def boom() -> None:
        raise ValueError("no such film")

    return app, add, boom


def test_off_by_default_the_enqueue_raises() -> None:
    _app, add, _ = make_app(inline_fallback=False)
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        add.delay(1, 2)


def test_on_the_job_runs_inline_with_current_job_and_is_logged_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cinejobs")
    _app, add, _ = make_app(inline_fallback=True)
    assert any("inline_fallback is on" in r.message for r in caplog.records)
    handle = add.delay(2, 3)
    assert handle.id.startswith("inline-")
    assert handle.status() == "succeeded"
    assert handle.wait() == "succeeded"
    assert handle.result() == {"sum": 5, "attempt": 1}
    assert handle.progress() == {"fraction": 1.0, "step": "added", "message": "2+3"}
    info = handle.info()
    assert (info["task"], info["args"], info["max_attempts"]) == ("inline.add", [2, 3], 5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "INLINE" in errors[0].getMessage()
    assert "inline.add" in errors[0].getMessage()


def test_a_failing_job_run_inline_is_a_failed_handle_not_an_exception_at_enqueue() -> None:
    _app, _, boom = make_app(inline_fallback=True)
    handle = boom.delay()
    assert handle.status() == "failed"
    with pytest.raises(JobFailed) as failed:
        handle.result()
    assert failed.value.error_type == "ValueError"
    assert "no such film" in failed.value.error_message
    assert "Traceback" in failed.value.traceback


def test_jobs_for_later_and_unknown_tasks_still_raise() -> None:
    app, add, _ = make_app(inline_fallback=True)
    with pytest.raises(BrokerUnavailable):
        add.enqueue((1, 2), delay=60)
    with pytest.raises(BrokerUnavailable):
        app.enqueue("elsewhere.task", (1,))
