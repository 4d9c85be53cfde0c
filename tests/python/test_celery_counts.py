"""`cinejobs worker --celery` counts each delivery as Celery records it: a task that fails for
good is failed (not retried, not succeeded), a Celery retry is a retry, a global rate limit's
hold is a snooze (neither). Checked against the states and retry counts in Celery's result
backend, with a real worker subprocess on a real redis-server."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery_workers import CeleryAppWorker
from helpers import TESTS_DIR, wait_until

pytestmark = pytest.mark.slow

COUNTS = re.compile(
    r"cinejobs worker stopped: .*; processed (?P<processed>[\d,]+) \| succeeded "
    r"(?P<succeeded>[\d,]+) \| failed (?P<failed>[\d,]+) \| retried (?P<retried>[\d,]+) \| "
    r"running \d+(?: \| snoozed (?P<snoozed>[\d,]+))?"
)


def import_app(env: dict[str, str]) -> ModuleType:
    """Import tests/python/apps/celery_counts.py here (the producer) with `env` set."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        sys.modules.pop("apps.celery_counts", None)
        import apps.celery_counts as module
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return module


def test_celery_mode_counts_failures_retries_and_snoozes_as_the_result_backend_records(
    redis_server: Any, tmp_path: Path
) -> None:
    env = {"COUNTS_REDIS_URL": redis_server.url(db=6), "COUNTS_QUEUE": f"counts-{uuid.uuid4()}"}
    counts = import_app(env)
    results = (
        [counts.ok.delay(i) for i in range(30)]
        + [counts.boom.delay(i) for i in range(5)]
        + [counts.flaky.delay(f"k{i}", 2) for i in range(3)]
        + [counts.give_up.delay(i) for i in range(2)]
        + [counts.limited.delay(i) for i in range(20)]
    )
    worker = CeleryAppWorker(
        "cinejobs",
        "apps.celery_counts:app",
        [env["COUNTS_QUEUE"]],
        tmp_path / "worker.log",
        cwd=TESTS_DIR,
        concurrency=4,
        env=env,
        extra=("--log-format", "json"),
    )
    try:
        wait_until(
            lambda: all(r.ready() for r in results) or not worker.alive(),
            timeout=60,
            interval=0.05,
            what="every task to reach a final state",
        )
        assert worker.alive(), worker.output()
    finally:
        assert worker.stop() == 0, worker.output()

    # What Celery's result backend recorded: final states, and each task's retries.
    metas = [r.backend.get_task_meta(r.id) for r in results]
    states = Counter(m["status"] for m in metas)
    retries = sum(int(m["retries"]) for m in metas)
    assert states == {"SUCCESS": 30 + 3 + 20, "FAILURE": 5 + 2}, states
    assert retries == 3 * 2 + 2 * 1

    found = COUNTS.search(worker.output())
    assert found is not None, worker.output()
    stats = {k: int((v or "0").replace(",", "")) for k, v in found.groupdict().items()}
    assert stats["succeeded"] == states["SUCCESS"]
    assert stats["failed"] == states["FAILURE"]
    assert stats["retried"] == retries
    assert stats["processed"] == states["SUCCESS"] + states["FAILURE"] + retries
    # 20 starts at 10/s, one at a time: most were held back at least once, none retried.
    assert stats["snoozed"] > 0

    # The job log says the same, one end record per delivery.
    records = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    ends = Counter(r["outcome"] for r in records if r.get("outcome") not in (None, "started"))
    assert ends == {
        "succeeded": stats["succeeded"],
        "failed": stats["failed"],
        "retried": stats["retried"],
        "snoozed": stats["snoozed"],
    }
    failed = [r for r in records if r.get("outcome") == "failed"]
    assert {r["error_type"] for r in failed} == {"ValueError", "ConnectionError"}
    assert all("Traceback (most recent call last):" in r["traceback"] for r in failed)
