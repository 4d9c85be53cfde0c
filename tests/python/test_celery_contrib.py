"""Unit tests of cinejobs.contrib.celery that need no worker: message decoding, the SUCCESS
document (the same bytes Celery's backend writes), and the CLI's refusals."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from celery import Celery
from celery.app.task import Context

from cinejobs.contrib.celery.worker import CeleryRunner, decode_body


def envelope(body: Any, content_type: str = "application/json") -> dict[str, Any]:
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": {},
        "properties": {"body_encoding": "base64"},
    }


def test_decode_body_reads_protocol_2_args_kwargs_and_embed() -> None:
    args, kwargs, embed = decode_body(envelope([[1, 2], {"x": 3}, {"callbacks": None}]))
    assert (args, kwargs, embed) == ([1, 2], {"x": 3}, {"callbacks": None})


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (envelope([[], {}, {}], "application/x-python-serialize"), "pickle is never decoded"),
        (envelope({"task": "old"}), r"protocol 2's \[args, kwargs, embed\]"),
        (envelope([{}, [], {}]), "not a list"),
        ({**envelope([[], {}, {}]), "body": "%%%"}, "cannot be decoded"),
    ],
)
def test_decode_body_refuses_what_it_cannot_run(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        decode_body(message)


@pytest.mark.parametrize("result", [{"a": [1, 2.5, None, "é"]}, _dt.datetime(2020, 1, 2, 3, 4)])
def test_the_success_document_is_the_one_celerys_backend_writes(result: Any) -> None:
    app = Celery("t", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")

    @app.task
    def task() -> None: ...

    context = Context({"id": "abc", "parent_id": "p", "group": "g", "args": [], "kwargs": {}})
    ours = json.loads(CeleryRunner(app, "host", None)._success_document(task, result, context))
    meta = task.backend._get_result_meta(
        result=result, state="SUCCESS", traceback=None, request=context
    )
    meta["task_id"] = "abc"
    celerys = json.loads(task.backend.encode(meta))
    assert ours.pop("date_done") and celerys.pop("date_done")
    assert ours == celerys


# Celery reads CELERY_* variables over an app's own settings: the CLI runs without them.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cinejobs", *args],
        capture_output=True, text=True, timeout=60, env=CLEAN_ENV,
    )  # fmt: skip


def test_the_cli_refuses_a_celery_app_that_does_not_use_redis(tmp_path: Any) -> None:
    (tmp_path / "amqp_app.py").write_text(
        "from celery import Celery\napp = Celery('a', broker='amqp://guest@localhost//')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cinejobs", "worker", "--celery", "amqp_app:app"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=CLEAN_ENV,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "broker_url is 'amqp://guest@localhost//'" in proc.stderr
    assert proc.returncode == 2


def test_the_cli_names_a_celery_app_it_cannot_load() -> None:
    proc = run_cli("worker", "--celery", "no_such_module_here:app")
    assert proc.returncode == 2
    assert "cannot load --celery 'no_such_module_here:app'" in proc.stderr
