"""A pytest plugin that fails any test through which a test password gets out.

The suite's servers and URLs carry passwords no other text contains (TEST_SECRETS): the
session's redis-server requires REDIS_PASSWORD, the session PostgreSQL URL carries
POSTGRES_PASSWORD (the cluster trusts loopback logins, so libpq never sends it, but every
message that quotes the URL would show it), and the redaction tests add passwords holding '@'.
This plugin then looks for them in everything the suite produces:

- every log record emitted in the test process, on the root logger and on the ``cinejobs``
  logger (which does not propagate once the CLI configured it), formatted with its traceback;
- every cinejobs exception created in the test process (CinejobsError and its subclasses,
  raised by Python or translated from the C++ core), caught by the test or not;
- every report section pytest captured (stdout, stderr, log) and the failure text, per phase;
- the text files (``*.log``, ``*.out``, ``*.err``, ``*.txt``) left under the test's tmp_path,
  where subprocess workers, uvicorn and the schedulers write their output.

A test through which a secret leaked fails: its teardown raises (records and exceptions, files)
or its report is turned into a failure (captured output). Messages name the leak with the
secret replaced by <SECRET>, so the failure report itself does not leak it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cinejobs.errors import CinejobsError

REDIS_PASSWORD = "s3cr3t-redis-pw"
POSTGRES_PASSWORD = "s3cr3t-pg-pw"
AT_PASSWORD = "p@ss@word-s3cr3t"
QUERY_PASSWORD = "s3cr3t-query-pw"
TEST_SECRETS = (REDIS_PASSWORD, POSTGRES_PASSWORD, AT_PASSWORD, QUERY_PASSWORD)
# A password with an unescaped '@' leaked its tail before redaction: look for the tail too,
# and for the percent-encoded form a URL builder (Django's settings, urlencode) gives.
_NEEDLES = (*TEST_SECRETS, AT_PASSWORD.split("@", 1)[1], quote(AT_PASSWORD, safe=""))
_TEXT_SUFFIXES = {".log", ".out", ".err", ".txt"}

_lock = threading.Lock()
_leaks: list[str] = []


def find_secret(text: str) -> str | None:
    """The first test secret (or the tail of the '@' one) in ``text``, or None."""
    return next((n for n in _NEEDLES if n in text), None)


def masked(text: str, width: int = 160) -> str:
    """The part of ``text`` around its first secret, every secret replaced by <SECRET>."""
    needle = find_secret(text)
    at = text.find(needle) if needle else 0
    part = text[max(0, at - width // 2) : at + width // 2]
    for n in _NEEDLES:
        part = part.replace(n, "<SECRET>")
    return part


def _record(where: str, text: str) -> None:
    if find_secret(text) is not None:
        with _lock:
            _leaks.append(f"{where}: ...{masked(text)}...")


class _LeakHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record whose arguments do not format: its raw parts then
            text = f"{record.msg} {record.args}"
        _record(f"log record of {record.name}", text)


_handler = _LeakHandler()
_original_init = CinejobsError.__init__


def _observed_init(self: CinejobsError, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    _record(f"{type(self).__name__} message", " ".join(str(a) for a in self.args))


def pytest_configure(config: pytest.Config) -> None:
    # Observes, never changes: the exception is built exactly as before, then its text read.
    CinejobsError.__init__ = _observed_init  # type: ignore[method-assign]
    for name in ("", "cinejobs"):
        logging.getLogger(name).addHandler(_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    CinejobsError.__init__ = _original_init  # type: ignore[method-assign]
    for name in ("", "cinejobs"):
        logging.getLogger(name).removeHandler(_handler)


def _take_leaks() -> list[str]:
    with _lock:
        taken = list(_leaks)
        _leaks.clear()
    return taken


def _scan_files(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix in _TEXT_SUFFIXES and path.is_file():
            text = path.read_text(errors="replace")
            if find_secret(text) is not None:
                found.append(f"file {path.relative_to(root)}: ...{masked(text)}...")
    return found


@pytest.fixture(autouse=True)
def _no_secret_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test (at teardown) when a test secret reached a log record, a cinejobs
    exception or a text file under its tmp_path."""
    # Nothing is dropped: what leaked since the last test's end (a session fixture's start, a
    # stray thread) fails this test.
    yield
    leaks = _take_leaks()
    # The test's tmp_path is torn down (not deleted) before this autouse fixture: take its path
    # from the values the test's fixtures had.
    tmp_path = getattr(request.node, "funcargs", {}).get("tmp_path")
    if isinstance(tmp_path, Path) and tmp_path.exists():
        leaks += _scan_files(tmp_path)
    if leaks:
        pytest.fail("a test secret got out:\n" + "\n".join(leaks), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    leaks = [
        f"{title}: ...{masked(content)}..."
        for title, content in report.sections
        if find_secret(content) is not None
    ]
    if report.passed and leaks:
        report.outcome = "failed"
        report.longrepr = "a test secret got out in captured output:\n" + "\n".join(leaks)
    elif report.failed and find_secret(report.longreprtext) is not None:
        # The failure is reported anyway; say that its text shows a secret too.
        report.sections.append(("secret_scan", "the failure text above shows a test secret"))
