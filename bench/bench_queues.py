"""cinejobs on Redis and on PostgreSQL, Celery and RQ side by side, with no-op jobs.

Starts ONE redis-server (scripts/redis_server.py: loopback, append-only file; appendfsync
``always`` by default, the setting under which an enqueue that returned is on disk) and ONE
PostgreSQL cluster (scripts/postgres_server.py, durable: fsync and full-page writes on, as in
production), and measures, one system after another on those same servers (emptied in
between):

- enqueue, single: one call per job (``task.delay()``, RQ ``queue.enqueue``);
- enqueue, bulk: one call for many jobs where the system has it (cinejobs
  ``app.enqueue_many``, RQ ``queue.enqueue_many`` in a pipeline); Celery has none (a group or
  chunks still publishes one message per task), so its cell says n/a;
- processed: the jobs just enqueued, run by the system's workers, started after the enqueue;
  the clock runs from the first job taken to the last one done, as the system itself counts
  them (cinejobs job counts, Celery's queue and unacked messages, RQ's finished registry);
- latency: enqueue one job at a time to an idle worker and take the time from just before the
  enqueue call to the first line of the handler (CLOCK_MONOTONIC, which every process on the
  machine shares; the handler pushes its stamp to a Redis list the bench waits on, whatever
  the broker).

Systems: cinejobs on Redis and on PostgreSQL, each with a Python handler in an embedded worker
(in the bench process) and in CLI workers (``python -m cinejobs worker``, 2 processes), and
with the native C++ ``cinejobs.noop`` handler (embedded worker); Celery's prefork and threads
pools (``celery worker`` subprocesses, concurrency 2) and RQ (2 ``rq worker`` SimpleWorker
processes), both on the Redis.

Writes bench/results/queues.md, queues.json and queues.png, and prints the table. A benchmark,
not a test: one run on a shared machine; compare rows of the same run.

    make bench-queues       # installs celery[redis], rq, redis, matplotlib into .venv first
    .venv/bin/python bench/bench_queues.py [--only redis,postgres,celery,rq]
        [--appendfsync everysec]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(BENCH_DIR))

from postgres_server import PostgresServer  # noqa: E402
from redis_apps._stamp import STAMPS  # noqa: E402
from redis_server import RedisServer  # noqa: E402

BULK_CHUNK = 10_000
LATENCY_WARMUP = 20
# After a latency job started, the worker gets this long to finish it and fall idle again.
IDLE_GAP = 0.005
DRAIN_TIMEOUT = 600.0


@dataclass
class Row:
    system: str
    workers: str
    enqueued_single: int = 0
    enqueue_single: float | None = None
    enqueued_bulk: int = 0
    enqueue_bulk: float | None = None
    bulk_note: str = ""
    processed: int = 0
    process: float | None = None
    latency_jobs: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_note: str = ""
    notes: list[str] = field(default_factory=list)


# ---- measuring ----


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def call_rate(fn: Callable[[], object], n: int) -> float:
    """Calls of ``fn`` per second, over ``n`` calls one after another."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return rate(n, time.perf_counter() - start)


def measure_drain(
    remaining: Callable[[], int], total: int, what: str, interval: float = 0.005
) -> tuple[int, float]:
    """Poll ``remaining()`` (jobs not yet done) every ``interval`` seconds while workers run
    ``total`` jobs; return (``total``, jobs/s). The clock starts at the first observation below
    ``total`` (so worker start-up is not counted) and the rate counts the jobs done from there
    to the end."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    left = remaining()
    while left >= total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no job was taken in {DRAIN_TIMEOUT:g} s")
        time.sleep(0.001)
        left = remaining()
    start, at_start = time.perf_counter(), left
    while left > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {left} jobs still not done after {DRAIN_TIMEOUT:g} s")
        time.sleep(interval)
        left = remaining()
    elapsed = time.perf_counter() - start
    return total, rate(at_start, elapsed)


def measure_latency(
    client: redis.Redis, enqueue: Callable[[int], object], count: int, what: str
) -> tuple[float, float]:
    """Enqueue ``count`` stamp jobs one at a time, each once the previous one started and the
    worker had IDLE_GAP to fall idle; return (p50, p99) of enqueue-to-start in ms."""
    client.delete(STAMPS)
    samples: list[float] = []
    for seq in range(-LATENCY_WARMUP, count):
        before = time.monotonic_ns()
        enqueue(seq)
        reply = client.blpop([STAMPS], timeout=30)
        if reply is None:
            raise RuntimeError(f"{what}: latency job {seq} did not start within 30 s")
        got_seq, started = (int(x) for x in reply[1].split())
        if got_seq != seq:
            raise RuntimeError(f"{what}: expected the stamp of job {seq}, got {got_seq}")
        if seq >= 0:
            samples.append((started - before) / 1e6)
        time.sleep(IDLE_GAP)
    return percentile(samples, 50), percentile(samples, 99)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---- processes ----


class Processes:
    """Worker subprocesses of one system, logging to files; stopped with SIGTERM (SIGKILL
    past a timeout) on exit."""

    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir = logdir
        self.env = env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.logdir / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=BENCH_DIR,
                env=self.env,
                start_new_session=True,
            )
        self.procs.append((proc, log))
        return proc

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"worker {proc.args!r} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def guarded(remaining: Callable[[], int], workers: Processes) -> Callable[[], int]:
    """``remaining`` that first checks the workers are still alive (a crashed worker must end
    the bench, not hang it)."""

    def check() -> int:
        workers.check_alive()
        return remaining()

    return check


# ---- the systems ----


@dataclass
class Broker:
    """Where a cinejobs row runs: its broker URL, how to empty it, and how often its job
    counts may be polled while workers drain it (a count over PostgreSQL's table is a scan:
    polled every 5 ms it would compete with the workers it measures)."""

    name: str
    url: str
    reset: Callable[[], None]
    poll: float = 0.005


class Bench:
    def __init__(
        self,
        server: RedisServer,
        postgres: PostgresServer | None,
        options: argparse.Namespace,
        workdir: Path,
    ) -> None:
        self.server = server
        self.postgres = postgres
        self.options = options
        self.workdir = workdir
        self.url = server.url()
        self.client = redis.Redis.from_url(self.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CINEJOBS_")}
        env["BENCH_REDIS_URL"] = self.url
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        os.environ["BENCH_REDIS_URL"] = self.url  # for the embedded worker's stamp task
        self.env = env

    def reset(self) -> None:
        """Empty Redis and shrink its append-only file, so each system starts alike."""
        self.client.flushall()
        self.wait_for_rewrite()  # an automatic one may be running
        try:
            self.client.bgrewriteaof()
        except redis.ResponseError as exc:  # one started meanwhile: it shrinks the file too
            if "in progress" not in str(exc):
                raise
        self.wait_for_rewrite()

    def wait_for_rewrite(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            info = self.client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not finish rewriting its append-only file")
            time.sleep(0.05)

    def workers(self, name: str) -> Processes:
        logdir = self.workdir / "logs"
        logdir.mkdir(exist_ok=True)
        return Processes(logdir, self.env)

    # ---- cinejobs ----

    def redis_rows(self) -> list[Row]:
        return self.cinejobs_rows(Broker("Redis", self.url, self.reset))

    def postgres_rows(self) -> list[Row]:
        import psycopg

        import cinejobs._core

        assert self.postgres is not None
        url = self.postgres.url()
        cinejobs._core.migrate(url)

        def reset() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE cinejobs.jobs")
                conn.execute("VACUUM ANALYZE cinejobs.jobs")

        return self.cinejobs_rows(Broker("PostgreSQL", url, reset, poll=0.1))

    def cinejobs_rows(self, broker: Broker) -> list[Row]:
        import cinejobs

        try:
            cinejobs.App(broker.url).connect()
        except cinejobs.ConfigError as exc:
            print(f"cinejobs rows on {broker.name} skipped: {exc}", file=sys.stderr)
            return []
        on = f"cinejobs on {broker.name}"
        return [
            self.cinejobs(broker, f"{on}, Python handler, embedded worker", "bench.noop",
                          "embedded"),
            self.cinejobs(broker, f"{on}, Python handler, CLI worker", "bench.noop", "cli"),
            self.cinejobs(broker, f"{on}, native C++ handler", "cinejobs.noop", "native"),
        ]  # fmt: skip

    def cinejobs(self, broker: Broker, system: str, task: str, mode: str) -> Row:
        from redis_apps import cinejobs_app

        broker.reset()
        n, n_bulk, conc = self.options.jobs, self.options.bulk_jobs, self.options.concurrency
        app = cinejobs_app.app
        app.close()
        app.use_broker(broker.url)
        queue = "default"
        workers = {
            "embedded": f"1 process (the bench's), {conc} threads",
            "cli": f"2 `cinejobs worker` processes, {conc} threads each",
            "native": f"1 process (the bench's), {conc} threads",
        }[mode]
        row = Row(system, workers, enqueued_single=n, enqueued_bulk=n_bulk)
        if task == "bench.noop":
            row.enqueue_single = call_rate(cinejobs_app.noop.delay, n)
        else:
            row.enqueue_single = call_rate(lambda: app.enqueue(task), n)

        def bulk() -> None:
            for start in range(0, n_bulk, BULK_CHUNK):
                app.enqueue_many([(task,)] * min(BULK_CHUNK, n_bulk - start))

        row.enqueue_bulk = rate(n_bulk, timed(bulk))
        row.bulk_note = f"`app.enqueue_many`, {BULK_CHUNK:,} per call"
        total = n + n_bulk

        def done() -> int:
            return sum(c for q, s, c in app.counts() if q == queue and s == "succeeded")

        def remaining() -> int:
            return total - done()

        if mode in ("embedded", "native"):
            with app.worker(queues=[queue], concurrency=conc) as worker:
                row.processed, row.process = measure_drain(
                    lambda: total - worker.stats()["succeeded"], total, system
                )
                if mode == "embedded":
                    row.latency_jobs = self.options.latency_jobs
                    row.latency_p50_ms, row.latency_p99_ms = measure_latency(
                        self.client,
                        cinejobs_app.stamp.delay,
                        self.options.latency_jobs,
                        system,
                    )
        else:
            with self.workers("cinejobs") as procs:
                for _ in range(2):
                    procs.start(
                        "cinejobs-worker",
                        [
                            sys.executable,
                            "-m",
                            "cinejobs",
                            "worker",
                            "--app",
                            "redis_apps.cinejobs_app:app",
                            "--broker",
                            broker.url,
                            "--queues",
                            queue,
                            "--concurrency",
                            str(conc),
                        ],
                    )
                row.processed, row.process = measure_drain(
                    guarded(remaining, procs), total, system, broker.poll
                )
                row.latency_jobs = self.options.latency_jobs
                row.latency_p50_ms, row.latency_p99_ms = measure_latency(
                    self.client,
                    cinejobs_app.stamp.delay,
                    self.options.latency_jobs,
                    system,
                )
        if mode == "native":
            row.latency_note = "n/a: the native no-op records no start time"
        app.close()
        return row

    # ---- Celery ----

    def celery_rows(self) -> list[Row]:
        return [self.celery("prefork"), self.celery("threads")]

    def celery(self, pool: str) -> Row:
        from redis_apps import celery_app

        self.reset()
        n = self.options.celery_jobs
        system = f"Celery {importlib.metadata.version('celery')}, {pool} pool"
        row = Row(system, f"1 `celery worker --pool {pool} -c 2` (2 {_unit(pool)})")
        row.enqueued_single = n
        noop = celery_app.noop
        row.enqueue_single = call_rate(noop.delay, n)
        row.bulk_note = "n/a: no bulk enqueue (group/chunks publish one message per task)"

        def remaining() -> int:
            return int(self.client.llen("celery")) + int(self.client.hlen("unacked"))

        with self.workers("celery") as procs:
            procs.start(
                f"celery-{pool}",
                [
                    str(Path(sys.executable).with_name("celery")),
                    "-A",
                    "redis_apps.celery_app",
                    "worker",
                    "--pool",
                    pool,
                    "--concurrency",
                    "2",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel",
                    "WARNING",
                ],
            )
            row.processed, row.process = measure_drain(guarded(remaining, procs), n, system)
            row.latency_jobs = self.options.slow_latency_jobs
            row.latency_p50_ms, row.latency_p99_ms = measure_latency(
                self.client,
                celery_app.stamp.delay,
                self.options.slow_latency_jobs,
                system,
            )
        return row

    # ---- RQ ----

    def rq_rows(self) -> list[Row]:
        return [self.rq()]

    def rq(self) -> Row:
        from rq import Queue

        from redis_apps import rq_jobs

        self.reset()
        n = self.options.rq_jobs
        system = f"RQ {importlib.metadata.version('rq')}, SimpleWorker"
        row = Row(system, "2 `rq worker --worker-class SimpleWorker` processes")
        queue = Queue("default", connection=self.client)
        row.enqueued_single = n
        row.enqueue_single = call_rate(lambda: queue.enqueue(rq_jobs.noop), n)

        def bulk() -> None:
            for start in range(0, n, BULK_CHUNK):
                count = min(BULK_CHUNK, n - start)
                with self.client.pipeline() as pipe:
                    queue.enqueue_many(
                        [Queue.prepare_data(rq_jobs.noop) for _ in range(count)], pipeline=pipe
                    )
                    pipe.execute()

        row.enqueued_bulk = n
        row.enqueue_bulk = rate(n, timed(bulk))
        row.bulk_note = f"`queue.enqueue_many` in one pipeline, {min(n, BULK_CHUNK):,} per call"
        total = 2 * n
        registry = queue.finished_job_registry

        def remaining() -> int:
            return total - int(registry.count)

        with self.workers("rq") as procs:
            for _ in range(2):
                procs.start(
                    "rq-worker",
                    [
                        str(Path(sys.executable).with_name("rq")),
                        "worker",
                        "--url",
                        self.url,
                        "--worker-class",
                        "rq.worker.SimpleWorker",
                        "--quiet",
                        "default",
                    ],
                )
            row.processed, row.process = measure_drain(guarded(remaining, procs), total, system)
            row.latency_jobs = self.options.slow_latency_jobs
            row.latency_p50_ms, row.latency_p99_ms = measure_latency(
                self.client,
                lambda seq: queue.enqueue(rq_jobs.stamp, seq),
                self.options.slow_latency_jobs,
                system,
            )
        return row


def _unit(pool: str) -> str:
    return "processes" if pool == "prefork" else "threads"


# ---- report ----


def fmt_rate(value: float | None, note: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| system | workers (processing) | enqueue, 1 call per job (jobs/s) | enqueue, bulk "
        "(jobs/s) | processed (jobs/s) | latency p50 (ms) | latency p99 (ms) | jobs "
        "(single / bulk / processed / latency) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        counts = (
            f"{r.enqueued_single:,} / {r.enqueued_bulk:,} / {r.processed:,} / {r.latency_jobs:,}"
        )
        lines.append(
            f"| {r.system} | {r.workers} | {fmt_rate(r.enqueue_single)} | "
            f"{fmt_rate(r.enqueue_bulk)} | {fmt_rate(r.process)} | {fmt_ms(r.latency_p50_ms)} | "
            f"{fmt_ms(r.latency_p99_ms)} | {counts} |"
        )
    notes = [f"- {r.system}, bulk: {r.bulk_note}" for r in rows if r.bulk_note]
    notes += [f"- {r.system}, latency: {r.latency_note}" for r in rows if r.latency_note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def chart(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["\n".join(textwrap.wrap(r.system.replace(", ", "\n"), 18)) for r in rows]
    panels: list[tuple[str, list[tuple[str, list[float | None]]], str]] = [
        ("enqueue (jobs/s)", [("1 call per job", [r.enqueue_single for r in rows]),
                              ("bulk", [r.enqueue_bulk for r in rows])], "jobs/s"),
        ("processed (jobs/s)", [("no-op jobs", [r.process for r in rows])], "jobs/s"),
        ("enqueue-to-start latency, idle worker (ms)",
         [("p50", [r.latency_p50_ms for r in rows]), ("p99", [r.latency_p99_ms for r in rows])],
         "ms"),
    ]  # fmt: skip
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(12, 1.5 * len(rows)), 4.4 * len(panels)))
    for ax, (label, series, unit) in zip(axes, panels, strict=True):
        known = [v for _, values in series for v in values if v]
        bottom = min(known) / 3 if known else 0.1
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(rows))]
            heights = [v if v else bottom for v in values]
            ax.bar(xs, heights, width, label=name)
            for x, v, h in zip(xs, values, heights, strict=True):
                text = "n/a" if not v else (f"{v:,.0f}" if unit == "jobs/s" else f"{v:.2f}")
                ax.annotate(text, (x, h), ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(bottom=bottom)
        ax.set_title(label)
        ax.set_ylabel(unit + " (log scale)")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, fontsize=8)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 130), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict[str, str]:
    out = {}
    for name in ("cinejobs", "celery", "kombu", "rq", "redis", "hiredis"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


@contextlib.contextmanager
def redis_server(appendfsync: str) -> Iterator[RedisServer]:
    server = RedisServer(extra_args=("--appendfsync", appendfsync))
    try:
        yield server.start()
    finally:
        server.close()


@contextlib.contextmanager
def postgres_server(wanted: bool) -> Iterator[PostgresServer | None]:
    if not wanted:
        yield None
        return
    with PostgresServer(durable=True) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="cinejobs: single enqueues")
    parser.add_argument("--bulk-jobs", type=int, default=100_000, help="cinejobs: bulk enqueues")
    parser.add_argument(
        "--celery-jobs", type=int, default=5_000, help="Celery: jobs enqueued and processed"
    )
    parser.add_argument(
        "--rq-jobs", type=int, default=3_000, help="RQ: jobs per enqueue kind (single, bulk)"
    )
    parser.add_argument("--latency-jobs", type=int, default=1_000, help="cinejobs latency jobs")
    parser.add_argument(
        "--slow-latency-jobs", type=int, default=300, help="Celery and RQ latency jobs"
    )
    parser.add_argument("--concurrency", type=int, default=256, help="cinejobs worker threads")
    parser.add_argument(
        "--appendfsync", choices=["always", "everysec", "no"], default="always",
        help="redis-server's appendfsync (default: always)",
    )  # fmt: skip
    parser.add_argument(
        "--only",
        default="redis,postgres,celery,rq",
        help="comma-separated systems to run: redis and postgres are cinejobs on each",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--name", default="queues", help="base name of the result files")
    options = parser.parse_args()
    only = {s.strip() for s in options.only.split(",") if s.strip()}

    rows: list[Row] = []
    with (
        redis_server(options.appendfsync) as server,
        postgres_server("postgres" in only) as postgres,
        tempfile.TemporaryDirectory(prefix="cinejobs-bench-queues-") as tmp,
    ):
        bench = Bench(server, postgres, options, Path(tmp))
        redis_version = str(bench.client.info("server")["redis_version"])
        postgres_version = postgres.sql("SHOW server_version") if postgres else None
        started = time.monotonic()
        for name, run in (
            ("redis", bench.redis_rows),
            ("postgres", bench.postgres_rows),
            ("celery", bench.celery_rows),
            ("rq", bench.rq_rows),
        ):
            if name in only:
                t0 = time.monotonic()
                new = run()
                rows += new
                for row in new:
                    print(
                        f"  {row.system}: single {fmt_rate(row.enqueue_single)}/s, bulk "
                        f"{fmt_rate(row.enqueue_bulk)}/s, processed {fmt_rate(row.process)}/s, "
                        f"p50 {fmt_ms(row.latency_p50_ms)} ms, p99 {fmt_ms(row.latency_p99_ms)} ms",
                        file=sys.stderr,
                    )
                print(f"{name}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        total_s = time.monotonic() - started

    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "appendfsync": options.appendfsync,
        "postgres_server": postgres_version,
        "versions": versions(),
        "seconds": round(total_s, 1),
    }
    postgres_part = (
        f" and one PostgreSQL {postgres_version} (fsync on, synchronous_commit on)"
        if postgres_version
        else ""
    )
    header = (
        f"One redis-server {redis_version} (appendonly yes, appendfsync {options.appendfsync})"
        f"{postgres_part} on loopback, no-op jobs, {machine['cpus']} CPUs, "
        f"Python {machine['python']}, {machine['date']}; whole run {total_s:.0f} s"
    )
    text = table(rows, header)
    print(text)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / f"{options.name}.md").write_text(text + "\n")
    (options.out / f"{options.name}.json").write_text(
        json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )
    if rows:
        chart(rows, options.out / f"{options.name}.png", header)


if __name__ == "__main__":
    main()
