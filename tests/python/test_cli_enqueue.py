"""`cinejobs enqueue` takes the task's own options: found through --app, or, in the README's
form without it, by importing the task's module; a call the task cannot take is refused before
anything is stored; a builtin called with the wrong arguments fails once, not three times."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cinejobs

TESTS_DIR = Path(__file__).resolve().parent


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    return subprocess.run(
        [sys.executable, "-m", "cinejobs", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_the_readme_form_finds_the_task_by_its_module_and_takes_its_options(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    done = cli("enqueue", "apps.enqueue_target.summarize", "--args", "[42]", "--broker", url,
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    job = cinejobs.App(url).get_job(done.stdout.strip()).info()
    assert (job["queue"], job["max_attempts"]) == ("enrich", 2)


def test_with_app_the_task_must_be_one_of_its_tasks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    done = cli("enqueue", "nope.task", "--app", "apps.enqueue_target:app", "--broker", url,
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "--app 'apps.enqueue_target:app' has no task 'nope.task'" in done.stderr
    assert "apps.enqueue_target.summarize" in done.stderr
    ok = cli("enqueue", "apps.enqueue_target.summarize", "--args", "[1]", "--app",
             "apps.enqueue_target:app", "--broker", url, cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert cinejobs.App(url).get_job(ok.stdout.strip()).info()["queue"] == "enrich"


def test_a_task_that_cannot_be_found_is_enqueued_with_a_note(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    done = cli("enqueue", "elsewhere.jobs.send_mail", "--broker", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not found by importing 'elsewhere.jobs'" in done.stderr
    job = cinejobs.App(url).get_job(done.stdout.strip()).info()
    assert job["queue"] == "default"


def test_arguments_the_task_cannot_take_are_refused_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    done = cli("enqueue", "apps.enqueue_target.summarize", "--args", "[1, 2]", "--broker", url,
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "not enqueued: task 'apps.enqueue_target.summarize' cannot be called" in done.stderr
    assert cinejobs.App(url).jobs() == []


def test_a_builtin_called_with_the_wrong_arguments_fails_once(tmp_path: Path) -> None:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    handle = app.enqueue("cinejobs.sleep", [0.5])
    with app.worker(["default"], poll_interval=0.01):
        assert handle.wait(timeout=30) == "failed"
    job = handle.info()
    assert (job["attempt"], job["error"]["type"]) == (1, "TypeError")
    app.close()
