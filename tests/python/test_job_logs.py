"""Job logs: a real `cinejobs worker` writes one start and one end record per attempt on
stderr, as JSON lines or readable text, with the traceback of a failure; an embedded worker
whose logger is off attaches nothing; the live status line and the records share a terminal
without garbling each other."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WorkerProcess, read_lines, spawn_cli, wait_until

import cinejobs
from cinejobs._status import StatusLine
from cinejobs.joblog import LOGGER_NAME, JobLog, configure_logging

N_OK = 20
APP = "apps.joblogs:app"


class Run:
    """A CLI worker's run over N_OK succeeding jobs and one failing job (2 attempts)."""

    def __init__(self, worker: WorkerProcess, stderr: Path, ok: list[str], bad: str) -> None:
        self.worker = worker
        self.stderr = stderr
        self.ok = ok
        self.bad = bad


def run_worker(broker_url: str, tmp_path: Path, log_format: str) -> Run:
    app = cinejobs.App(broker_url)
    ok = [app.enqueue("joblogs.add", [i, 1]) for i in range(N_OK)]
    bad = app.enqueue("joblogs.broken", ["x"], max_attempts=2)
    stderr = tmp_path / "stderr.log"
    worker = spawn_cli(
        [
            "worker",
            "--app",
            APP,
            "--broker",
            broker_url,
            "--poll-interval",
            "0.02",
            "--log-format",
            log_format,
        ],
        tmp_path / "stdout.log",
        tmp_path,
        stderr_log=stderr,
    )
    try:
        worker.wait_started()
        wait_until(
            lambda: all(h.status() == "succeeded" for h in ok) and bad.status() == "failed",
            timeout=30,
            what="every job to end",
        )
        # The records follow the broker's outcome: wait for the last end record to be written.
        ends = N_OK + 2  # the retried attempt's record says "failed in" too
        wait_until(
            lambda: sum(" succeeded in " in line or " failed in " in line
                        for line in read_lines(stderr)) >= ends,
            timeout=15,
            what=f"{ends} end records in the worker's log",
        )  # fmt: skip
        worker.terminate()
        assert worker.wait() == 0, worker.output()
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    return Run(worker, stderr, [h.id for h in ok], bad.id)


def test_the_json_log_has_one_start_and_one_end_line_per_attempt(
    broker_url: str, tmp_path: Path
) -> None:
    run = run_worker(broker_url, tmp_path, "json")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(read_lines(run.stderr), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stderr line {number} is not JSON: {line!r}\n{run.worker.output()}")
    for record in records:
        assert {"ts", "level", "logger", "message"} <= record.keys(), record
        ts = _dt.datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
        assert ts.utcoffset() == _dt.timedelta(0), record["ts"]
    jobs = [r for r in records if r["logger"] == LOGGER_NAME and "job_id" in r]
    assert len(jobs) == len(records), [r for r in records if r not in jobs]

    by_attempt: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in jobs:
        by_attempt.setdefault((r["job_id"], r["attempt"]), []).append(r)
    expected = {(job_id, 1) for job_id in run.ok} | {(run.bad, 1), (run.bad, 2)}
    assert set(by_attempt) == expected
    for (job_id, attempt), lines in by_attempt.items():
        assert [r["outcome"] for r in lines][:1] == ["started"], lines
        assert len(lines) == 2, f"job {job_id} attempt {attempt}: {lines}"
        start, end = lines
        assert start["level"] == "INFO" and start["duration"] is None
        assert isinstance(end["duration"], float) and 0 <= end["duration"] < 10, end
        for r in lines:
            assert r["queue"] == "default"
            assert r["task"] == ("joblogs.broken" if job_id == run.bad else "joblogs.add")
        if job_id != run.bad:
            assert (end["outcome"], end["level"], end["max_attempts"]) == ("succeeded", "INFO", 3)
            assert end["error_type"] is None and end["traceback"] is None

    retried = by_attempt[(run.bad, 1)][1]
    assert (retried["outcome"], retried["level"], retried["max_attempts"]) == (
        "retried",
        "WARNING",
        2,
    )
    assert retried["retry_at"] is not None
    failed = by_attempt[(run.bad, 2)][1]
    assert (failed["outcome"], failed["level"]) == ("failed", "ERROR")
    assert failed["error_type"] == "ValueError"
    assert failed["error_message"] == "value 'x' is not acceptable"
    assert failed["traceback"].startswith("Traceback (most recent call last):")
    assert "in check_the_value" in failed["traceback"]
    assert "ValueError: value 'x' is not acceptable" in failed["traceback"]
    assert failed["message"] == (
        f"job {run.bad} joblogs.broken[default] failed in {failed['duration']:.3f} s "
        "(attempt 2/2): ValueError: value 'x' is not acceptable"
    )


TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>INFO|WARNING|ERROR) cinejobs\.worker: "
    r"job (?P<id>[0-9a-f-]{36}) (?P<task>[\w.]+)\[default\] (?P<what>.*)$"
)


def test_the_text_log_has_a_readable_line_per_start_and_end_and_the_traceback(
    tmp_path: Path,
) -> None:
    run = run_worker(f"sqlite:///{tmp_path}/jobs.db", tmp_path, "text")
    lines = read_lines(run.stderr)
    parsed = [(i, m) for i, line in enumerate(lines) if (m := TEXT_LINE.match(line))]
    starts = [m for _, m in parsed if m["what"].startswith("started (attempt ")]
    assert len(starts) == N_OK + 2
    for job_id in run.ok:
        ends = [m for _, m in parsed if m["id"] == job_id]
        assert [m["level"] for m in ends] == ["INFO", "INFO"]
        assert ends[0]["what"] == "started (attempt 1/3)"
        assert re.fullmatch(r"succeeded in \d+\.\d{3} s \(attempt 1/3\)", ends[1]["what"])
    failed = [(i, m) for i, m in parsed if m["level"] == "ERROR"]
    assert len(failed) == 1
    at, line = failed[0]
    assert line["id"] == run.bad
    assert re.fullmatch(
        r"failed in \d+\.\d{3} s \(attempt 2/2\): ValueError: value 'x' is not acceptable",
        line["what"],
    )
    # The traceback follows on lines of its own, up to the exception line.
    traceback = lines[at + 1 : lines.index("ValueError: value 'x' is not acceptable", at + 1) + 1]
    assert traceback[0] == "Traceback (most recent call last):"
    assert any("in check_the_value" in t for t in traceback)
    # Every line is a record or part of a traceback: nothing else is written to stderr.
    record_lines = {i for i, _ in parsed}
    for i, text in enumerate(lines):
        assert i in record_lines or text.startswith(("Traceback", "  ", "ValueError: ")), text


# ---- in process: when the job log attaches, and the terminal ----


class Records(logging.Handler):
    """Keeps the records it is given (a real handler on the real logger)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock_:
            self.records.append(record)


@pytest.fixture
def job_logger() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.level, logger.propagate, logger.disabled)
    records = Records()
    logger.addHandler(records)
    logger.propagate = False
    try:
        yield logger, records
    finally:
        logger.removeHandler(records)
        logger.setLevel(saved[0])
        logger.propagate, logger.disabled = saved[1], saved[2]


def sqlite_app(tmp_path: Path) -> cinejobs.App:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")

    @app.task(name="unit.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="unit.broken", max_attempts=1)
    def broken() -> None:
        raise ValueError("broken on purpose")

    return app


@pytest.mark.parametrize("off", ["level", "disabled"])
def test_a_worker_whose_logger_is_off_attaches_no_event_queue(
    tmp_path: Path, job_logger: tuple[logging.Logger, Records], off: str
) -> None:
    logger, records = job_logger
    if off == "level":
        logger.setLevel(logging.CRITICAL)
    else:
        logger.setLevel(logging.INFO)
        logger.disabled = True
    app = sqlite_app(tmp_path)
    with app.worker() as worker:
        assert not worker._job_log.attached
        app.enqueue("unit.add", [1, 2]).wait(timeout=10)
        app.enqueue("unit.broken").wait(timeout=10)
    assert worker.stats()["failed"] == 1
    assert records.records == []


def test_a_logger_at_warning_gets_only_the_failures(
    tmp_path: Path, job_logger: tuple[logging.Logger, Records]
) -> None:
    logger, records = job_logger
    logger.setLevel(logging.WARNING)
    app = sqlite_app(tmp_path)
    with app.worker() as worker:
        assert worker._job_log.attached
        app.enqueue("unit.add", [1, 2]).wait(timeout=10)
        bad = app.enqueue("unit.broken")
        bad.wait(timeout=10)
    # stop() returned after the last record was logged.
    assert [(r.levelname, getattr(r, "outcome", None)) for r in records.records] == [
        ("ERROR", "failed")
    ]
    record = records.records[0]
    assert getattr(record, "job_id", None) == bad.id
    assert "broken on purpose" in (record.exc_text or "")


def test_a_logger_at_info_gets_every_start_and_end(
    tmp_path: Path, job_logger: tuple[logging.Logger, Records]
) -> None:
    logger, records = job_logger
    logger.setLevel(logging.INFO)
    app = sqlite_app(tmp_path)
    with app.worker() as worker:
        assert worker._job_log.attached
        handle = app.enqueue("unit.add", [1, 2])
        handle.wait(timeout=10)
    assert [getattr(r, "outcome", None) for r in records.records] == ["started", "succeeded"]
    assert {getattr(r, "job_id", None) for r in records.records} == {handle.id}


def test_log_records_and_the_status_line_do_not_garble_each_other_on_a_terminal() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as term:
            status = StatusLine(term, prefix="worker: ")
            assert status.tty
            logger = configure_logging("info", "text", stream=term, status=status)
            try:
                status.update({"succeeded": 3})
                logging.getLogger(LOGGER_NAME).info("a record")
                status.update({"succeeded": 4})
                status.finish()
            finally:
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
                logger.propagate = True
                logger.setLevel(logging.NOTSET)
        out = b""
        while select.select([master], [], [], 0.5)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        os.close(slave)
    text = out.decode().replace("\r\n", "\n")
    first = text.index("worker: processed 3")
    cleared = text.index("\r" + " " * len("worker: processed 3"), first)
    found = re.compile(r"\d{4}-\d\d-\d\d [\d:,]+ INFO cinejobs\.worker: a record\n").search(
        text, cleared
    )
    assert found is not None, text
    record = found.start()
    redrawn = text.index("worker: processed 3", record)  # drawn again below the record
    assert first < cleared < record < redrawn < text.index("worker: processed 4", redrawn)
    # The record begins on a cleared line: only the clearing stands between them.
    assert text[cleared:record].strip(" \r") == ""


def test_a_job_log_that_falls_behind_says_how_many_events_it_dropped(
    tmp_path: Path, job_logger: tuple[logging.Logger, Records]
) -> None:
    job_logger[0].setLevel(logging.CRITICAL)  # the worker's own job log stays off
    logger = logging.getLogger("tests.joblog")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    release = threading.Event()

    class Slow(Records):
        def emit(self, record: logging.LogRecord) -> None:
            release.wait(timeout=30)  # the first record holds the drain thread up
            super().emit(record)

    slow = Slow()
    logger.addHandler(slow)
    app = sqlite_app(tmp_path)
    try:
        with app.worker(concurrency=2) as worker:
            log = JobLog(worker._core, logger, capacity=3)
            # The worker has started: a second observer cannot be added any more.
            with pytest.raises(cinejobs.ConfigError):
                log.start()
        worker = app.worker(concurrency=2)
        log = JobLog(worker._core, logger, capacity=3)
        log.start()
        with worker:
            handles = [app.enqueue("unit.add", [i, 1]) for i in range(20)]
            for h in handles:
                h.wait(timeout=10)
            release.set()
        log.stop()
    finally:
        release.set()
        logger.removeHandler(slow)
    # One warning per time it fell behind (at least the one while it was held up).
    dropped = [r for r in slow.records if "fell behind" in r.getMessage()]
    assert dropped, [r.getMessage() for r in slow.records]
    assert all(r.levelname == "WARNING" for r in dropped)
    count = sum(getattr(r, "dropped", 0) for r in dropped)
    jobs = [r for r in slow.records if hasattr(r, "job_id")]
    assert count > 0 and len(jobs) + count == 40  # every event was logged or counted dropped


def test_a_program_that_never_stops_its_worker_still_exits(tmp_path: Path) -> None:
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "import cinejobs\n"
        f"app = cinejobs.App('sqlite:///{tmp_path}/jobs.db')\n"
        "worker = app.worker(concurrency=1).start()\n"
        "assert worker._job_log.attached\n"
        "app.enqueue('cinejobs.noop').wait(timeout=10)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "cinejobs.noop[default] started" in done.stderr
