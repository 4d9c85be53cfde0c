"""CINEJOBS["SCHEDULES"] read when Django starts, each case in its own process (Django's
settings are process-wide): schedules of declared tasks are declared on the project's app,
and a schedule naming a task no installed app declares fails start-up, naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

SCRIPT = """
import json, sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["cinejobs.contrib.django"],
    CINEJOBS={"BROKER_URL": sys.argv[1], "SCHEDULES": json.loads(sys.argv[2])},
)
try:
    django.setup()
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
else:
    from cinejobs.contrib.django import app
    print(json.dumps({n: s.spec for n, s in app.declared_schedules.items()}))
"""


def start_django(tmp_path: Path, schedules: dict[str, Any]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path}/jobs.db", json.dumps(schedules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_settings_schedules_are_declared_on_the_project_app(tmp_path: Path) -> None:
    declared = start_django(
        tmp_path,
        {
            "nightly": {"task": "cinejobs.prune", "cron": "0 2 * * *", "tz": "Europe/Paris"},
            "often": {"task": "cinejobs.noop", "every": "30s", "queue": "ops"},
        },
    )
    assert declared == {"nightly": "cron 0 2 * * * (Europe/Paris)", "often": "every 30s"}


def test_a_settings_schedule_of_an_unknown_task_fails_start_up(tmp_path: Path) -> None:
    outcome = start_django(tmp_path, {"nightly": {"task": "films.nope", "cron": "0 2 * * *"}})
    assert outcome["error"].startswith("ConfigError: ")
    assert "SCHEDULES\"]['nightly']: no task named 'films.nope'" in outcome["error"]


def test_a_bad_settings_schedule_fails_start_up_naming_the_field(tmp_path: Path) -> None:
    outcome = start_django(tmp_path, {"nightly": {"task": "cinejobs.noop", "cron": "0 25 * * *"}})
    assert "schedule 'nightly'" in outcome["error"]
    assert "hour" in outcome["error"]
