"""Prometheus metrics for real: a `cinejobs worker --metrics-port` subprocess scraped over HTTP
with urllib as its jobs succeed, fail and retry (SQLite and Redis), the server's start/stop
contract, a port already in use, and a FastAPI app under uvicorn serving /metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import TESTS_DIR, StartCliWorker, free_port, stop_gracefully, wait_until

import cinejobs
from cinejobs import _core
from cinejobs.metrics import CONTENT_TYPE, MetricsServer
from redis_server import RedisServer

Scrape = dict[str, float]


def fetch(url: str) -> tuple[int, str, str]:
    """GET ``url``: (status, Content-Type, body), 4xx and 5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def parse(text: str) -> Scrape:
    """Samples by series (name and labels as written); checks each family is announced."""
    samples: Scrape = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0]
        base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        assert name in typed or base in typed, f"sample before its # TYPE line: {line}"
        samples[series] = float(value)
    return samples


def scrape(url: str) -> Scrape:
    status, content_type, body = fetch(url)
    assert status == 200, body
    assert content_type == CONTENT_TYPE
    return parse(body)


def wait_for_samples(url: str, expected: Scrape, timeout: float = 30.0) -> Scrape:
    """Scrape until every expected series has exactly its value; fail naming the differences."""
    last: Scrape = {}

    def reached() -> bool:
        nonlocal last
        last = scrape(url)
        return all(last.get(k) == v for k, v in expected.items())

    try:
        wait_until(reached, timeout=timeout, interval=0.05, what="the expected metrics")
    except AssertionError:
        diff = {k: (v, last.get(k)) for k, v in expected.items() if last.get(k) != v}
        raise AssertionError(f"metrics not reached (expected, last seen): {diff}") from None
    return last


def jobs(kind: str, task: str, n: float, queue: str = "metrics") -> tuple[str, float]:
    return f'cinejobs_jobs_{kind}_total{{task="{task}",queue="{queue}"}}', n


def duration_count(task: str, n: float) -> tuple[str, float]:
    return f'cinejobs_job_duration_seconds_count{{task="{task}"}}', n


def depth(queue: str, state: str, n: float) -> tuple[str, float]:
    return f'cinejobs_queue_jobs{{queue="{queue}",state="{state}"}}', n


# The attempts of apps/metrics_tasks.py's tasks: this process's App does not import them, so
# each enqueue names its queue and attempts as the task declares them.
ATTEMPTS = {
    "metrics.ok": 1,
    "metrics.boom": 1,
    "metrics.flaky": 3,
    "metrics.doomed": 2,
    "metrics.limited": 1,
}


def enqueue(app: cinejobs.App, task: str, *args: object, **options: object) -> None:
    options.setdefault("queue", "metrics")
    app.enqueue(task, list(args), max_attempts=ATTEMPTS[task], **options)


@pytest.mark.parametrize("broker_url", ["sqlite", "redis"], indirect=True)
def test_a_cli_worker_serves_metrics_that_move_as_its_jobs_run(
    broker_url: str, start_cli_worker: StartCliWorker
) -> None:
    app = cinejobs.App(broker_url)
    # Parked in a queue the worker does not consume: the depth read from the broker shows them.
    for n in range(2):
        enqueue(app, "metrics.ok", n, queue="parked")
    enqueue(app, "metrics.ok", 9, queue="parked", delay=3600)

    port = free_port()
    worker = start_cli_worker(
        broker_url,
        "apps.metrics_tasks:app",
        queues=["metrics"],
        concurrency=3,
        extra=["--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
    )
    worker.wait_started()
    url = f"http://127.0.0.1:{port}/metrics"
    # Logged right after the started line, which wait_started may see first.
    wait_until(lambda: f"metrics on {url}" in worker.output(), what="the metrics line")

    before = scrape(url)
    assert before[depth("parked", "queued", 0)[0]] == 2
    assert before[depth("parked", "scheduled", 0)[0]] == 1
    assert before["cinejobs_queue_depth_up"] == 1
    assert before["cinejobs_jobs_running"] == 0
    assert before["cinejobs_worker_free_slots"] == 3
    assert not any(k.startswith("cinejobs_jobs_started_total{") for k in before), before

    for n in range(3):
        enqueue(app, "metrics.ok", n)
    enqueue(app, "metrics.boom")
    enqueue(app, "metrics.flaky")
    enqueue(app, "metrics.doomed")
    expected = dict(
        [
            jobs("started", "metrics.ok", 3),
            jobs("succeeded", "metrics.ok", 3),
            jobs("failed", "metrics.ok", 0),
            jobs("started", "metrics.boom", 1),
            jobs("failed", "metrics.boom", 1),
            jobs("retried", "metrics.boom", 0),
            jobs("started", "metrics.flaky", 2),
            jobs("retried", "metrics.flaky", 1),
            jobs("succeeded", "metrics.flaky", 1),
            jobs("started", "metrics.doomed", 2),
            jobs("retried", "metrics.doomed", 1),
            jobs("failed", "metrics.doomed", 1),
            jobs("timed_out", "metrics.doomed", 0),
            # One observation per ended attempt that ran a handler.
            duration_count("metrics.ok", 3),
            duration_count("metrics.boom", 1),
            duration_count("metrics.flaky", 2),
            duration_count("metrics.doomed", 2),
            depth("metrics", "succeeded", 4),
            depth("metrics", "failed", 2),
            depth("metrics", "queued", 0),
            depth("parked", "queued", 2),
            ("cinejobs_jobs_running", 0),
            ("cinejobs_worker_free_slots", 3),
        ]
    )
    after = wait_for_samples(url, expected)
    # The histogram's buckets are cumulative and end at the count.
    assert after['cinejobs_job_duration_seconds_bucket{task="metrics.ok",le="+Inf"}'] == 3
    assert after['cinejobs_job_duration_seconds_sum{task="metrics.ok"}'] > 0

    # More jobs move the same counters on.
    for n in range(2):
        enqueue(app, "metrics.ok", n)
    wait_for_samples(
        url,
        dict(
            [
                jobs("succeeded", "metrics.ok", 5),
                duration_count("metrics.ok", 5),
                jobs("failed", "metrics.boom", 1),
            ]
        ),
    )

    status, _, body = fetch(f"http://127.0.0.1:{port}/other")
    assert status == 404, body

    worker.terminate()
    assert worker.wait() == 0, worker.output()
    assert "cinejobs worker stopped" in worker.output()
    app.close()


def test_process_mode_counts_crashes_and_hard_timeouts_of_its_children(
    tmp_path: Path, start_cli_worker: StartCliWorker
) -> None:
    broker_url = f"sqlite:///{tmp_path}/jobs.db"
    app = cinejobs.App(broker_url)
    for _ in range(3):
        app.enqueue("pm.pid", max_attempts=3)
    app.enqueue("pm.segfault", max_attempts=1)
    app.enqueue("pm.exit", [3], max_attempts=2)  # the child exits: retried, then failed
    app.enqueue("pm.forever", max_attempts=1)  # killed past its hard timeout of 2 s
    port = free_port()
    worker = start_cli_worker(
        broker_url,
        "apps.process_mode:app",
        # One job per child: a crash takes down only its own job (with two, its neighbour
        # would end WorkerCrashed too, rightly, and the counts would depend on scheduling).
        concurrency=1,
        extra=["--processes", "2", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
    )
    worker.wait_started(60)
    wait_for_samples(
        f"http://127.0.0.1:{port}/metrics",
        dict(
            [
                jobs("succeeded", "pm.pid", 3, queue="default"),
                jobs("failed", "pm.segfault", 1, queue="default"),
                jobs("crashed", "pm.segfault", 1, queue="default"),
                jobs("retried", "pm.exit", 1, queue="default"),
                jobs("failed", "pm.exit", 1, queue="default"),
                jobs("crashed", "pm.exit", 2, queue="default"),
                jobs("failed", "pm.forever", 1, queue="default"),
                jobs("timed_out", "pm.forever", 1, queue="default"),
                jobs("crashed", "pm.forever", 0, queue="default"),
                duration_count("pm.pid", 3),
                duration_count("pm.segfault", 1),
                duration_count("pm.exit", 2),
                duration_count("pm.forever", 1),
                ("cinejobs_worker_free_slots", 2),
                # Children replaced: the segfault and both exits crashed, the spin was killed.
                ('cinejobs_child_restarts_total{cause="crashed"}', 3),
                ('cinejobs_child_restarts_total{cause="hard_timeout"}', 1),
            ]
        ),
        timeout=60,
    )
    worker.terminate()
    assert worker.wait() == 0, worker.output()
    app.close()


def test_jobs_held_back_by_their_rate_limit_count_as_snoozes_and_limiter_waits(
    tmp_path: Path, start_cli_worker: StartCliWorker
) -> None:
    broker_url = f"sqlite:///{tmp_path}/jobs.db"
    app = cinejobs.App(broker_url)
    for _ in range(6):
        enqueue(app, "metrics.limited")
    port = free_port()
    worker = start_cli_worker(
        broker_url,
        "apps.metrics_tasks:app",
        queues=["metrics"],
        extra=["--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
    )
    worker.wait_started()
    url = f"http://127.0.0.1:{port}/metrics"
    samples = wait_for_samples(
        url,
        dict(
            [
                jobs("succeeded", "metrics.limited", 6),
                jobs("started", "metrics.limited", 6),
                duration_count("metrics.limited", 6),
            ]
        ),
    )
    # A burst of 6 at 4/s: some wait. Each snooze is one wait of the task's limiter.
    snoozed = samples[jobs("snoozed", "metrics.limited", 0)[0]]
    assert snoozed >= 1
    assert samples['cinejobs_rate_limit_waits_total{limiter="task:metrics.limited"}'] == snoozed
    worker.terminate()
    assert worker.wait() == 0, worker.output()
    app.close()


def test_the_native_worker_binary_serves_the_same_metrics(tmp_path: Path) -> None:
    broker_url = f"sqlite:///{tmp_path}/jobs.db"
    app = cinejobs.App(broker_url)
    for _ in range(3):
        app.enqueue("cinejobs.noop")
    app.enqueue("nobody.knows", max_attempts=1)  # fails at once with UnknownTask
    port = free_port()
    binary = Path(sys.executable).with_name("cinejobs-worker")
    log = tmp_path / "binary.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "--broker", broker_url, "--metrics-port", str(port),
             "--metrics-host", "127.0.0.1", "--poll-interval", "0.02"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: f"metrics on {url}" in log.read_text(), what="the binary to start")
        samples = wait_for_samples(
            url,
            dict(
                [
                    jobs("succeeded", "cinejobs.noop", 3, queue="default"),
                    duration_count("cinejobs.noop", 3),
                    jobs("failed", "nobody.knows", 1, queue="default"),
                    depth("default", "succeeded", 3),
                    ("cinejobs_worker_free_slots", 8),
                ]
            ),
        )
        # An unknown task never ran a handler: no start, no duration.
        assert samples[jobs("started", "nobody.knows", 0, queue="default")[0]] == 0
        assert 'cinejobs_job_duration_seconds_count{task="nobody.knows"}' not in samples
        assert fetch(url.replace("/metrics", "/nothing"))[0] == 404
    finally:
        assert stop_gracefully(proc) == 0, log.read_text()
    app.close()


def test_a_metrics_port_in_use_is_one_clear_error_before_any_job_runs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
        proc = subprocess.run(
            [sys.executable, "-m", "cinejobs", "worker", "--app", "apps.metrics_tasks:app",
             "--broker", f"sqlite:///{tmp_path}/jobs.db", "--metrics-port", str(port),
             "--metrics-host", "127.0.0.1"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
        )  # fmt: skip
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"cinejobs worker: error: cannot serve metrics on 127.0.0.1:{port} (Address already in "
        "use): is another worker using it? Choose another --metrics-port"
    ], proc.stderr
    assert " started: " not in proc.stdout


def test_metrics_server_start_stop_contract_404_and_500(tmp_path: Path) -> None:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    with app.worker(["default"], 2) as worker:
        server = MetricsServer(worker.metrics_text, 0, "127.0.0.1")
        server.stop()  # before start: nothing to do
        server = MetricsServer(worker.metrics_text, 0, "127.0.0.1")
        assert server.start() is server.start()  # the second start does nothing
        assert server.port != 0
        _core.count_child_restart("max_jobs")
        samples = scrape(server.url)
        assert samples["cinejobs_worker_free_slots"] == 2
        assert samples['cinejobs_child_restarts_total{cause="max_jobs"}'] >= 1
        head = urllib.request.Request(server.url, method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            assert response.status == 200
            assert response.read() == b""
        assert fetch(server.url.replace("/metrics", "/"))[0] == 404
        server.stop()
        server.stop()  # twice: still fine
        with pytest.raises(OSError):
            fetch(server.url)

    def broken() -> str:
        raise RuntimeError("no counters today")

    with MetricsServer(broken, 0, "127.0.0.1") as failing:
        status, _, body = fetch(failing.url)
        assert status == 500
        assert "RuntimeError: no counters today" in body
    app.close()


def test_render_without_a_worker_gives_the_queue_depth_and_survives_a_broker_gone(
    start_redis: Callable[[], RedisServer],
) -> None:
    server = start_redis()
    url = server.url(prefix="metrics-down:", timeout_ms=500)
    app = cinejobs.App(url)
    enqueue(app, "metrics.ok", 1, queue="q")
    samples = parse(cinejobs.metrics.render_metrics(broker=app.broker))
    assert samples[depth("q", "queued", 0)[0]] == 1
    assert samples["cinejobs_queue_depth_up"] == 1
    server.kill()
    samples = parse(cinejobs.metrics.render_metrics(broker=app.broker))
    assert samples["cinejobs_queue_depth_up"] == 0
    assert not any(k.startswith("cinejobs_queue_jobs{") for k in samples)
    assert "cinejobs_tmdb_429_pauses_total" in samples
    app.close()


@pytest.fixture
def uvicorn_service(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """apps/metrics_service.py under a real uvicorn on a free port: (base URL, broker URL)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    port = free_port()
    broker_url = f"sqlite:///{tmp_path}/jobs.db"
    log = tmp_path / "uvicorn.log"
    env = dict(os.environ, CINEJOBS_BROKER=broker_url, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "apps.metrics_service:api", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=TESTS_DIR,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{log.read_text()}")
        try:
            return fetch(f"{base}/api/health")[0] == 200
        except OSError:
            return False

    try:
        wait_until(answers, timeout=30, what="uvicorn to answer")
        yield base, broker_url
    finally:
        stop_gracefully(proc)


def test_fastapi_router_serves_the_lifespan_workers_metrics_when_asked(
    uvicorn_service: tuple[str, str],
) -> None:
    base, broker_url = uvicorn_service
    app = cinejobs.App(broker_url)
    assert fetch(f"{base}/plain/metrics")[0] == 404  # opt-in
    for a in range(3):
        app.enqueue("web.add", [a, 1], queue="web", max_attempts=1)
    app.enqueue("web.fail", queue="web", max_attempts=1)
    wait_for_samples(
        f"{base}/api/metrics",
        dict(
            [
                jobs("succeeded", "web.add", 3, queue="web"),
                jobs("failed", "web.fail", 1, queue="web"),
                duration_count("web.add", 3),
                duration_count("web.fail", 1),
                depth("web", "succeeded", 3),
                ("cinejobs_worker_free_slots", 2),
            ]
        ),
    )
    app.close()
