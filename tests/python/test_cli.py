"""The `cinejobs` command: help of every command, status, jobs, enqueue, demo, and one clear
line with exit status 2 for the errors users make. Most run main() in this process; a few run
the real entry points as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cinejobs import App
from cinejobs.cli import main

COMMANDS = ["worker", "status", "jobs", "enqueue", "enrich", "demo"]
FAST: dict[str, Any] = {"lease": 1.5, "poll_interval": 0.01}


def run_cli(
    *argv: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cinejobs", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cinejobs")
    for command in COMMANDS:
        assert command in out
    assert "CINEJOBS_BROKER" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cinejobs {command}")
    assert "--broker URL" in out
    assert "$CINEJOBS_BROKER" in out
    assert len(out.splitlines()) > 6


def test_worker_help_describes_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--app MODULE:ATTR",
        "--queues Q1,Q2",
        "--concurrency N",
        "--grace S",
        "--lease S",
    ):
        assert option in out
    assert "SIGTERM" in out


def test_enqueue_prints_the_id_of_a_job_with_the_given_arguments(
    broker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "enqueue",
            "films.enrich",
            "--broker",
            broker_url,
            "--args",
            '[603, "The Matrix"]',
            "--kwargs",
            '{"lang": "en", "force": true}',
            "--queue",
            "enrich",
            "--priority",
            "3",
            "--delay",
            "60",
            "--unique-key",
            "film:603",
            "--max-attempts",
            "5",
            "--timeout",
            "2.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    job_id = out.strip()
    info = App(broker_url).get_job(job_id).info()
    assert info["task"] == "films.enrich"
    assert info["args"] == [603, "The Matrix"]
    assert info["kwargs"] == {"lang": "en", "force": True}
    assert (info["queue"], info["priority"], info["state"]) == ("enrich", 3, "scheduled")
    assert (info["unique_key"], info["max_attempts"], info["timeout_ms"]) == ("film:603", 5, 2500)


def test_enqueue_unique_conflict_names_the_live_job(
    broker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enqueue", "t.x", "--broker", broker_url, "--unique-key", "k"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["enqueue", "t.x", "--broker", broker_url, "--unique-key", "k"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert first in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_enqueue_with_app_takes_the_tasks_defaults(
    broker_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "myjobs.py").write_text(
        "import cinejobs\n"
        "app = cinejobs.App()\n"
        "@app.task(name='my.send', queue='mail', max_attempts=7)\n"
        "def send(to):\n"
        "    return to\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "myjobs", raising=False)
    assert (
        main(
            [
                "enqueue",
                "my.send",
                "--app",
                "myjobs:app",
                "--broker",
                broker_url,
                "--args",
                '["a@b.c"]',
            ]
        )
        == 0
    )
    job_id = capsys.readouterr().out.strip()
    info = App(broker_url).get_job(job_id).info()
    assert (info["queue"], info["max_attempts"]) == ("mail", 7)
    sys.modules.pop("myjobs", None)


def _populate(broker_url: str) -> dict[str, str]:
    """A broker with a succeeded, a failed, a queued and a scheduled job."""
    app = App(broker_url)

    @app.task(name="cli.ok")
    def ok() -> str:
        return "fine"

    @app.task(name="cli.broken", max_attempts=1)
    def broken() -> None:
        raise ValueError("the disk is full of films")

    ids = {"ok": ok.delay().id, "broken": broken.delay().id}
    with app.worker(**FAST):
        app.get_job(ids["ok"]).wait(timeout=15)
        app.get_job(ids["broken"]).wait(timeout=15)
    ids["queued"] = app.enqueue("cli.ok", queue="later").id
    ids["scheduled"] = app.enqueue("cli.ok", delay=3600).id
    return ids


def test_status_counts_jobs_per_queue_and_state(
    broker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--broker", broker_url]) == 0
    assert "no jobs" in capsys.readouterr().out
    _populate(broker_url)
    assert main(["status", "--broker", broker_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split()
    assert header == [
        "QUEUE",
        "SCHEDULED",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "TOTAL",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["default"] == ["1", "0", "0", "1", "1", "0", "3"]
    assert rows["later"] == ["0", "1", "0", "0", "0", "0", "1"]
    assert rows["(all)"] == ["1", "1", "0", "1", "1", "0", "4"]
    assert main(["status", "--broker", broker_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "default": {"failed": 1, "scheduled": 1, "succeeded": 1},
        "later": {"queued": 1},
    }


def test_jobs_lists_failed_jobs_with_their_error(
    broker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _populate(broker_url)
    assert main(["jobs", "--state", "failed", "--broker", broker_url]) == 0
    out = capsys.readouterr().out
    assert ids["broken"] in out
    assert "ValueError: the disk is full of films" in out
    assert ids["ok"] not in out and ids["queued"] not in out
    assert main(["jobs", "--state", "failed", "--broker", broker_url, "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)
    assert job["id"] == ids["broken"]
    assert job["error"]["type"] == "ValueError"
    assert "Traceback" in job["error"]["traceback"]
    assert main(["jobs", "--queue", "later", "--broker", broker_url]) == 0
    out = capsys.readouterr().out
    assert ids["queued"] in out and ids["broken"] not in out
    assert (
        main(["jobs", "--task", "cli.broken", "--state", "succeeded", "--broker", broker_url]) == 0
    )
    assert "no matching jobs" in capsys.readouterr().out
    assert main(["jobs", "--limit", "2", "--broker", broker_url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_default_broker_is_the_environment_variable_else_cinejobs_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["enqueue", "t.x"]) == 0
    capsys.readouterr()
    assert (tmp_path / "cinejobs.db").exists()
    assert App().broker_url == "sqlite:///cinejobs.db"
    env_url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("CINEJOBS_BROKER", env_url)
    assert App().broker_url == env_url
    assert main(["enqueue", "t.y"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert App(env_url).get_job(job_id).info()["task"] == "t.y"


def _assert_one_line_error(captured: pytest.CaptureFixture[str], *fragments: str) -> None:
    err = captured.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("command", [["status"], ["jobs"], ["enqueue", "t.x"], ["worker"]])
def test_malformed_broker_url_is_one_line_and_exit_2(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--broker", "mysql://localhost/jobs"]) == 2
    _assert_one_line_error(capsys, "mysql")


def test_unwritable_database_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["status", "--broker", f"sqlite:///{blocker}/jobs.db"]) == 2
    _assert_one_line_error(capsys, "jobs.db")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--args", "[1, 2"], "--args is not valid JSON"),
        (["--args", '{"a": 1}'], "--args must be a JSON array"),
        (["--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["--kwargs", "{'a': 1}"], "--kwargs is not valid JSON"),
    ],
)
def test_bad_json_arguments_are_one_line_and_exit_2(
    broker_url: str, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enqueue", "t.x", "--broker", broker_url, *argv]) == 2
    _assert_one_line_error(capsys, fragment)
    assert App(broker_url).counts() == []


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("no_such_module_xyz:app", "no module named 'no_such_module_xyz'"),
        ("badapp:missing", "has no attribute 'missing'"),
        ("badapp:not_an_app", "not a cinejobs.App"),
        ("brokenapp:app", "ZeroDivisionError"),
        (":app", "names no module"),
    ],
)
def test_bad_app_is_one_line_and_exit_2(
    spec: str,
    fragment: str,
    broker_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "badapp.py").write_text("not_an_app = 42\n")
    (tmp_path / "brokenapp.py").write_text("x = 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    for name in ("badapp", "brokenapp"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert main(["worker", "--app", spec, "--broker", broker_url]) == 2
    _assert_one_line_error(capsys, fragment)
    for name in ("badapp", "brokenapp"):
        sys.modules.pop(name, None)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["jobs", "--state", "sleeping"]) == 2
    assert main(["worker", "--concurrency", "0"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_entry_points_run_as_real_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    enqueued = run_cli("enqueue", "t.x", "--broker", url, "--args", "[1]")
    assert enqueued.returncode == 0, enqueued.stderr
    status = run_cli("status", "--broker", url)
    assert status.returncode == 0
    assert "default" in status.stdout
    bad = run_cli("status", "--broker", "nope")
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    script = Path(sys.executable).with_name("cinejobs")
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "usage: cinejobs" in helped.stdout


@pytest.mark.slow
def test_demo_tour_runs_end_to_end_and_exits_0(tmp_path: Path) -> None:
    done = run_cli("demo", "--tour", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\r" not in out  # piped: plain lines, no in-place status line
    assert "jobs by state: cancelled 1, failed 1, succeeded 52" in out
    assert "failed: demo.parse_release after 2 attempts: ValueError" in out
    assert "retried: demo.fetch_poster succeeded on attempt 2" in out
    assert "unique key:" in out
    assert "demo ok" in out
    assert list(tmp_path.iterdir()) == []  # the default demo leaves no database behind
