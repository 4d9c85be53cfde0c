"""examples/django_project runs its own test suite (Django's test runner) against the real
PostgreSQL of the test session, its jobs executed by a real `manage.py cinejobs_worker`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from secret_scan import find_secret

from postgres_server import PostgresServer

pytest.importorskip("django")
pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"


def test_the_django_example_suite_passes(postgres_server: PostgresServer) -> None:
    # Django's test runner creates the database (and, with --keepdb, leaves it).
    database = f"filmsite_{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        FILMSITE_DB_NAME=database,
        FILMSITE_DB_HOST="127.0.0.1",
        FILMSITE_DB_PORT=str(postgres_server.port),
        FILMSITE_DB_USER="postgres",
        # Trusted on loopback, so never checked; in the broker URL the staff page shows.
        FILMSITE_DB_PASSWORD=postgres_server.password or "",
    )
    env.pop("CINEJOBS_BROKER", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "test", "films", "--noinput", "--keepdb", "-v", "2"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    # Nothing the project's tests and workers printed shows the password.
    assert find_secret(output) is None, "a test secret is in the Django suite's output"
    assert done.returncode == 0, output
    assert "Ran 7 tests" in output, output
    assert "\nOK\n" in output, output
