"""No secret a URL carries gets into a message, a log line or a page.

Two layers. secret_scan.py (loaded by conftest.py) watches everything the whole suite produces
for the test passwords: log records, cinejobs exceptions, captured output, subprocess logs under
tmp_path; the session's Redis and PostgreSQL URLs carry those passwords, so every test that
shows a broker URL is checked. This file adds the messages the rest of the suite would not
provoke with a password in the URL: malformed URLs, unreachable brokers, the CLI's commands,
the worker start lines, FastAPI's error answers, reprs, and passwords that hold an unescaped
'@'. Each test also asserts by itself, so it fails even if the scan were off; and the last
tests show that the scan fails a test through which a secret gets out.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import StartCliWorker, free_port, wait_until
from secret_scan import AT_PASSWORD, QUERY_PASSWORD, TEST_SECRETS, find_secret

import cinejobs
from cinejobs import App, BrokerUnavailable, ConfigError, _core
from cinejobs.cli import main
from postgres_server import PostgresServer
from redis_server import RedisServer

BINARY = Path(sys.executable).with_name("cinejobs-worker")
TESTS_DIR = Path(__file__).resolve().parent


def assert_clean(text: str, *, shows: str = "") -> None:
    """No test secret in ``text``; ``shows``, when given, is there (what stays readable)."""
    leaked = find_secret(text)
    assert leaked is None, "a test secret is in: " + text.replace(leaked or "", "<SECRET>")
    assert shows in text, f"{shows!r} is not in {text!r}"


@pytest.fixture(scope="module")
def at_redis() -> Iterator[RedisServer]:
    """A redis-server whose password holds unescaped '@' signs, as users write them."""
    with RedisServer(password=AT_PASSWORD) as server:
        yield server


def at_postgres_url(server: PostgresServer, schema: str = "redact") -> str:
    # The cluster trusts loopback logins: the password is carried, never checked, and must not
    # become part of the host libpq connects to.
    return (
        f"postgresql://postgres:{AT_PASSWORD}@127.0.0.1:{server.port}/postgres"
        f"?schema={schema}&migrate=true&sslpassword={QUERY_PASSWORD}"
    )


def test_redact_masks_every_secret_a_url_can_carry() -> None:
    assert cinejobs.redact(f"redis://:{AT_PASSWORD}@127.0.0.1:6379/0") == (
        "redis://:***@127.0.0.1:6379/0"
    )
    assert cinejobs.redact(
        f"postgresql://app@db:5433/jobs?password={QUERY_PASSWORD}&schema=cj"
    ) == ("postgresql://app@db:5433/jobs?password=***&schema=cj")
    assert cinejobs.redact(f"host=db user=app password='{AT_PASSWORD}' dbname=jobs") == (
        "host=db user=app password=*** dbname=jobs"
    )
    assert cinejobs.redact(f"unix:///run/r.sock?db=1&Token={QUERY_PASSWORD}") == (
        "unix:///run/r.sock?db=1&Token=***"
    )
    assert cinejobs.redact("sqlite:////var/lib/jobs.db") == "sqlite:////var/lib/jobs.db"


BAD_URLS = [
    f"redis://:{AT_PASSWORD}@127.0.0.1:6379/0?no_such_option=1",
    f"redis://app:{AT_PASSWORD}@127.0.0.1:70000/0",
    f"redis://:{AT_PASSWORD}@127.0.0.1/notadb",
    f"redis://:{AT_PASSWORD}@127.0.0.1/0?timeout_ms=soon",
    f"unix:///tmp/r.sock?password={QUERY_PASSWORD}&no_such_option=1",
    f"unix:///tmp/r.sock?db=x&password={AT_PASSWORD}",
    f"postgresql://app:{AT_PASSWORD}@127.0.0.1/db?result_ttl_s=-1",
    f"postgresql://app:{AT_PASSWORD}@127.0.0.1/db?no_such_libpq_option=1",
    f"postgresql://127.0.0.1/db?password={QUERY_PASSWORD}&max_payload_bytes=lots",
    f"postgresql://app:{AT_PASSWORD}@127.0.0.1/db?bad%zzescape=1",
    f"mysql://app:{AT_PASSWORD}@127.0.0.1/db",
    f"sqlite:///jobs.db?password={QUERY_PASSWORD}",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_malformed_url_is_a_config_error_that_never_shows_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        App(url).connect()
    assert_clean(str(info.value), shows="***")
    with pytest.raises(ConfigError) as info:
        _core.migrate(url)
    assert_clean(str(info.value), shows="***")


@pytest.mark.parametrize(
    "make_url",
    [
        lambda port: f"redis://:{AT_PASSWORD}@127.0.0.1:{port}/0?timeout_ms=300",
        lambda port: f"postgresql://app:{AT_PASSWORD}@127.0.0.1:{port}/db?connect_timeout=3",
        lambda port: f"postgresql://127.0.0.1:{port}/db?password={QUERY_PASSWORD}",
    ],
    ids=["redis", "postgres-userinfo", "postgres-query"],
)
def test_an_unreachable_broker_is_named_without_its_password(
    make_url: Callable[[int], str],
) -> None:
    port = free_port()
    with pytest.raises(BrokerUnavailable) as info:
        App(make_url(port)).counts()
    # The host is the real one: a password's '@' did not move it.
    assert_clean(str(info.value), shows=f"127.0.0.1:{port}")


def test_stores_opened_from_urls_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        cinejobs.RateLimiter("redact", "5/s", broker=f"ftp://app:{AT_PASSWORD}@127.0.0.1/x")
    assert_clean(str(info.value), shows="ftp://app:***@127.0.0.1/x")


def test_the_cli_shows_broker_urls_redacted(
    capsys: pytest.CaptureFixture[str], at_redis: RedisServer, postgres_server: PostgresServer
) -> None:
    urls = [at_redis.url(prefix="redact:"), at_postgres_url(postgres_server)]
    for url in urls:
        for argv in (
            ["migrate", "--broker", url],
            ["enqueue", "--broker", url, "cinejobs.noop"],
            ["status", "--broker", url],
            ["jobs", "--broker", url],
            ["schedules", "--broker", url],
        ):
            assert main(argv) == 0, argv
            out, err = capsys.readouterr()
            # enqueue prints the job id alone and jobs a table; the others name the broker.
            quiet = argv[0] in ("enqueue", "jobs")
            assert_clean(out + err, shows="" if quiet else "***@127.0.0.1:")
    # The error line of a command that failed.
    assert main(["status", "--broker", f"redis://:{AT_PASSWORD}@127.0.0.1:1/0?bogus=1"]) == 2
    out, err = capsys.readouterr()
    assert_clean(out + err, shows="redis://:***@127.0.0.1:1/0?bogus=1")


def test_the_worker_start_lines_show_the_broker_redacted(
    start_cli_worker: StartCliWorker, at_redis: RedisServer, tmp_path: Path
) -> None:
    worker = start_cli_worker(at_redis.url(prefix="redact-cli:"), "apps.faults:app")
    worker.wait_started()
    assert_clean(worker.output(), shows=f"broker redis://:***@127.0.0.1:{at_redis.port}/0")
    # The standalone C++ worker writes its own start line.
    log = tmp_path / "binary.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BINARY), "--broker", at_redis.url(prefix="redact-bin:")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "started:" in log.read_text() or proc.poll() is not None,
            timeout=30,
            what="cinejobs-worker to start",
        )
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert_clean(log.read_text(), shows=f"broker redis://:***@127.0.0.1:{at_redis.port}/0")


def test_reprs_and_log_lines_show_the_broker_redacted(
    caplog: pytest.LogCaptureFixture, at_redis: RedisServer
) -> None:
    url = at_redis.url(prefix="redact-repr:")
    # The handler goes on the cinejobs logger itself: it stops propagating once the CLI
    # configured logging in this process.
    logger = logging.getLogger("cinejobs")
    logger.addHandler(caplog.handler)
    try:
        app = App(url, inline_fallback=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert_clean(repr(app), shows="redis://:***@127.0.0.1")
    assert_clean(caplog.text, shows="redis://:***@127.0.0.1")
    limiter = cinejobs.RateLimiter("redact", "5/s", broker=url)
    assert_clean(repr(limiter), shows="store=redis")
    app.connect()
    with pytest.raises(ConfigError) as info:
        app.use_broker("sqlite:///other.db")
    assert_clean(str(info.value), shows="redis://:***@127.0.0.1")


def test_the_celery_contrib_refuses_a_broker_without_showing_its_password() -> None:
    pytest.importorskip("celery")
    from cinejobs.contrib.celery.worker import _redis_url

    with pytest.raises(ConfigError) as info:
        _redis_url(f"amqp://guest:{AT_PASSWORD}@127.0.0.1:5672//", "broker_url")
    assert_clean(str(info.value), shows="amqp://guest:***@127.0.0.1:5672//")


def test_fastapi_error_answers_show_the_broker_redacted(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_fastapi import Service

    port = free_port()
    service = Service(
        f"redis://:{AT_PASSWORD}@127.0.0.1:{port}/0?timeout_ms=300",
        tmp_path / "uvicorn.log",
        embedded_worker=False,
    )
    try:
        status, body = service.request("GET", "/api/health")
        assert status == 503
        assert_clean(str(body), shows=f"127.0.0.1:{port}")
        status, body = service.request(
            "POST", "/api/jobs/films.enrich", {"args": ["Ran", 1, str(tmp_path)]}
        )
        assert status == 503, body
        assert_clean(str(body), shows=f"127.0.0.1:{port}")
    finally:
        service.stop()


SCAN_PROBE = """
import logging
import pytest
from cinejobs import ConfigError

SECRET = {secret!r}

def test_prints_it():
    print("broker redis://:" + SECRET + "@h/0")

def test_logs_it():
    logging.getLogger("cinejobs").error("broker redis://:%s@h/0", SECRET)

def test_raises_and_catches_it():
    with pytest.raises(ConfigError):
        raise ConfigError("bad URL redis://:" + SECRET + "@h/0")

def test_a_subprocess_log_shows_it(tmp_path):
    (tmp_path / "worker.log").write_text("started: broker redis://:" + SECRET + "@h/0")

def test_shows_only_the_redacted_url(tmp_path):
    import cinejobs
    text = cinejobs.redact("redis://:" + SECRET + "@h/0")
    print(text)
    logging.getLogger("cinejobs").error(text)
    (tmp_path / "worker.log").write_text(text)
"""


@pytest.mark.parametrize("secret", TEST_SECRETS)
def test_the_suite_wide_scan_fails_a_test_through_which_a_secret_gets_out(
    tmp_path: Path, secret: str
) -> None:
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "test_probe.py").write_text(SCAN_PROBE.format(secret=secret))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), *sys.path]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "secret_scan", "-p", "no:cacheprovider",
         "-rfEp", "--tb=line", "--show-capture=no", "test_probe.py"],
        cwd=tmp_path / "probe", env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    outcomes: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR") and "::" in rest:
            outcomes.setdefault(rest.split("::", 1)[1].split(" ", 1)[0], set()).add(word)
    summary = "\n".join(done.stdout.splitlines()[-15:]).replace(secret, "<SECRET>")
    assert outcomes.get("test_shows_only_the_redacted_url") == {"PASSED"}, summary
    for name in (
        "test_prints_it",
        "test_logs_it",
        "test_raises_and_catches_it",
        "test_a_subprocess_log_shows_it",
    ):
        assert outcomes.get(name, set()) - {"PASSED"}, (name, summary)
    # The scan names each leak without showing the secret.
    assert find_secret(done.stdout + done.stderr) is None, summary
