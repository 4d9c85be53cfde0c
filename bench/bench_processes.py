"""cinejobs thread mode and process mode against Celery's prefork pool, on no-op and CPU-bound
jobs, on one redis-server.

Starts ONE redis-server (scripts/redis_server.py, ``--appendonly no`` as bench_celery.py runs
it) for every row: cinejobs on DB 0 under its own key prefix, Celery on DB 1. Two workloads:

- no-op: the task returns None;
- CPU-bound: ``spin(n)``, pure-Python integer arithmetic holding the GIL, ``n`` calibrated once
  at start in this process to about 5 ms and passed as the job's argument to both engines.

Rows: ``cinejobs worker`` in thread mode (one process, default concurrency) and in process mode
(``--processes N --concurrency C``), and ``celery worker --pool prefork -c C`` (default
prefetch multiplier 4, acks on receipt, results ignored, no gossip/mingle/heartbeat). For each
run the jobs are enqueued first, then the worker starts; the clock runs from the first job
taken from the queue (as the engine's own broker keys show it) to the last one done, so
start-up (spawning children, importing the app) is not counted; the rate counts the jobs done
in that window. Every row runs ``--repeats`` times (rows interleaved, so that the machine's
noise spreads over all of them); the table shows the median and the range. During each
measured window the bench also reads the CPU time (from /proc) of the worker's main process,
of its children and of redis-server.

Writes bench/results/processes.md, processes.json and processes.png, and prints the table and
the two ratios issue 13 asks for. A benchmark, not a test: compare rows of the same run.

    make bench-processes    # installs celery[redis], redis, matplotlib into .venv first
    .venv/bin/python bench/bench_processes.py [--repeats 3] [--only noop,cpu]
        [--rows thread,p1c1,p2c1,p2c2,p1c4,p2c4,celery1,celery2]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(BENCH_DIR))

from process_apps.workload import calibrate  # noqa: E402
from redis_server import RedisServer  # noqa: E402

CINEJOBS_DB = 0
CINEJOBS_PREFIX = "bench-processes:"
CELERY_DB = 1
CELERY_QUEUE = "celery"
QUEUE = "default"
BULK_CHUNK = 10_000
# No run may take longer than this from the worker's start to its last job.
RUN_TIMEOUT = 300.0
# How often the bench looks at the counts while a worker drains (each look is one small Redis
# call and a little Python: cheap, but it shares the machine with what it measures).
POLL_INTERVAL = 0.01
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Config:
    """One row: an engine and how its worker runs."""

    key: str
    engine: str  # "cinejobs" or "celery"
    processes: int  # cinejobs: 0 = thread mode; celery: pool processes
    concurrency: int | None  # cinejobs: per process (None: the CLI's default); celery: -c

    @property
    def label(self) -> str:
        if self.engine == "celery":
            return f"Celery prefork, -c {self.processes}"
        if self.processes == 0:
            return "cinejobs thread mode"
        c = self.concurrency if self.concurrency is not None else _default_concurrency()
        return f"cinejobs process mode, N={self.processes}, C={c}"

    @property
    def layout(self) -> str:
        if self.engine == "celery":
            return (
                f"1 main + {self.processes} pool process{'es' if self.processes > 1 else ''}, "
                f"1 job each (prefetch 4 x {self.processes})"
            )
        if self.processes == 0:
            return f"1 process, {self.concurrency or _default_concurrency()} threads"
        c = self.concurrency if self.concurrency is not None else _default_concurrency()
        return (
            f"1 supervisor + {self.processes} child{'ren' if self.processes > 1 else ''}, "
            f"{c} thread{'s' if c != 1 else ''} each"
        )


def _default_concurrency() -> int:
    """The core's default (the one place it is written)."""
    from cinejobs import _core

    return _core.WorkerOptions().concurrency


CONFIGS = [
    Config("thread", "cinejobs", 0, None),
    Config("p1c1", "cinejobs", 1, 1),
    Config("p2c1", "cinejobs", 2, 1),
    Config("p2c2", "cinejobs", 2, 2),
    Config("p1c4", "cinejobs", 1, 4),
    Config("p2c4", "cinejobs", 2, 4),
    Config("p2", "cinejobs", 2, None),  # the core's default concurrency per child
    Config("celery1", "celery", 1, 1),
    Config("celery2", "celery", 2, 2),
]
WORKLOADS = {"noop": "no-op", "cpu": "CPU-bound (~5 ms of pure Python)"}


@dataclass
class Run:
    config: str
    workload: str
    repeat: int
    jobs: int  # enqueued
    counted: int  # done within the measured window
    seconds: float
    jobs_per_s: float
    cpu_main_s: float  # the worker's main process (supervisor, celery main)
    cpu_children_s: float  # its child processes
    cpu_redis_s: float
    # The rest of the machine (not this bench's polling): whatever else runs on it meanwhile.
    cpu_others_s: float
    # Commands redis-server ran in the window for the worker (INFO commandstats, inner commands
    # of scripts included, the bench's own polls taken out), per job counted: how well the
    # worker batches its reserves and acks.
    redis_calls_per_job: float
    # Context switches of the worker's threads (main process and children) per job counted.
    switches_per_job: float
    # Seconds the children's threads were runnable but waited for a CPU (taken by another).
    children_wait_s: float


# ---- CPU time from /proc ----


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime + stime in seconds) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy (not idle or waiting) so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def context_switches(pids: set[int]) -> int:
    """Context switches so far (voluntary and not) of every thread of ``pids``."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    for line in Path(task.path, "status").read_text().splitlines():
                        if "ctxt_switches:" in line:
                            total += int(line.split()[1])
    return total


def runqueue_wait(pids: set[int]) -> float:
    """Seconds the threads of ``pids`` have spent runnable but waiting for a CPU, so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += int(Path(task.path, "schedstat").read_text().split()[1])
    return total / 1e9


def cpu_times(root: int, redis_pid: int) -> tuple[float, float, float, float, int, float]:
    """CPU seconds so far of ``root``, of its descendants alive now, of redis-server, and of
    the whole machine; the context switches of ``root`` and its descendants; and the time its
    descendants waited for a CPU."""
    machine = machine_busy()
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            got = _stat(int(entry.name))
            if got is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = got
    below: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - below
        below |= frontier
    switches = context_switches(below | {root})
    return (
        cpu.get(root, 0.0),
        sum(cpu[p] for p in below),
        cpu.get(redis_pid, 0.0),
        machine,
        switches,
        runqueue_wait(below),
    )


# ---- one run ----


class Bench:
    def __init__(self, server: RedisServer, options: argparse.Namespace, workdir: Path) -> None:
        self.server = server
        self.options = options
        self.logdir = workdir
        self.cinejobs_url = server.url(db=CINEJOBS_DB, prefix=CINEJOBS_PREFIX)
        self.celery_url = server.url(db=CELERY_DB)
        self.cinejobs_redis = redis.Redis.from_url(server.url(db=CINEJOBS_DB))
        self.celery_redis = redis.Redis.from_url(self.celery_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CINEJOBS_")}
        env["BENCH_CELERY_URL"] = self.celery_url
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        os.environ["BENCH_CELERY_URL"] = self.celery_url
        self.env = env
        assert server.proc is not None
        self.redis_pid = server.proc.pid
        self.spin_n = 0
        self.spin_ms = 0.0

    def jobs_for(self, config: Config, workload: str) -> int:
        if workload == "cpu":
            return self.options.cpu_jobs
        return self.options.noop_jobs if config.engine == "cinejobs" else self.options.celery_jobs

    def run(self, config: Config, workload: str, repeat: int) -> Run:
        n = self.jobs_for(config, workload)
        if config.engine == "cinejobs":
            remaining, taken = self.enqueue_cinejobs(workload, n)
            command = [
                sys.executable, "-m", "cinejobs", "worker",
                "--app", "process_apps.cinejobs_app:app", "--broker", self.cinejobs_url,
                "--queues", QUEUE,
            ]  # fmt: skip
            if config.processes:
                command += ["--processes", str(config.processes)]
            if config.concurrency is not None:
                command += ["--concurrency", str(config.concurrency)]
        else:
            remaining, taken = self.enqueue_celery(workload, n)
            command = [
                str(Path(sys.executable).with_name("celery")),
                "-A", "process_apps.celery_app", "worker", "--pool", "prefork",
                "--concurrency", str(config.processes), "--without-gossip", "--without-mingle",
                "--without-heartbeat", "--loglevel", "WARNING",
            ]  # fmt: skip
        log = self.logdir / f"{config.key}-{workload}-{repeat}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=BENCH_DIR,
                env=self.env,
                start_new_session=True,
            )
        try:
            return self.measure(config, workload, repeat, n, proc, log, remaining, taken)
        finally:
            stop(proc)

    def measure(
        self,
        config: Config,
        workload: str,
        repeat: int,
        n: int,
        proc: subprocess.Popen[bytes],
        log: Path,
        remaining: Callable[[], int],
        taken: Callable[[], bool],
    ) -> Run:
        what = f"{config.label}, {workload}"
        deadline = time.monotonic() + RUN_TIMEOUT

        def check() -> None:
            if proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"{what}: the worker exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not done within {RUN_TIMEOUT:g} s")

        while not taken():
            check()
            time.sleep(0.001)
        start = time.perf_counter()
        cpu_start = cpu_times(proc.pid, self.redis_pid)
        own_start = time.process_time()
        calls_start = self.redis_calls()
        left_at_start = remaining()
        left = left_at_start
        polls = 1
        while left > 0:
            check()
            time.sleep(POLL_INTERVAL)
            left = remaining()
            polls += 1
        seconds = time.perf_counter() - start
        cpu_end = cpu_times(proc.pid, self.redis_pid)
        own = time.process_time() - own_start
        calls = self.redis_calls() - calls_start
        # Less the bench's own commands: its polls (counted on the drained broker) and INFO.
        before = self.redis_calls()
        for _ in range(10):
            remaining()
        per_poll = (self.redis_calls() - before - 1) / 10
        calls = max(0.0, calls - polls * per_poll - 1)
        main, children, server, machine, switches, children_wait = (
            b - a for a, b in zip(cpu_start, cpu_end, strict=True)
        )
        others = max(0.0, machine - main - children - server - own)
        return Run(
            config.key, workload, repeat, n, left_at_start, round(seconds, 4),
            left_at_start / seconds, round(main, 2), round(children, 2), round(server, 2),
            round(others, 2), round(calls / max(1, left_at_start), 2),
            round(switches / max(1, left_at_start), 2), round(children_wait, 2),
        )  # fmt: skip

    def redis_calls(self) -> int:
        stats = self.cinejobs_redis.info("commandstats")
        return sum(int(v["calls"]) for v in stats.values())

    # ---- enqueue ----

    def enqueue_cinejobs(
        self, workload: str, n: int
    ) -> tuple[Callable[[], int], Callable[[], bool]]:
        from process_apps import cinejobs_app

        self.cinejobs_redis.flushdb()
        app = cinejobs_app.app
        app.close()
        app.use_broker(self.cinejobs_url)
        item = ("bench.noop",) if workload == "noop" else ("bench.spin", (self.spin_n,))
        for start in range(0, n, BULK_CHUNK):
            app.enqueue_many([item] * min(BULK_CHUNK, n - start))

        def count(state: str) -> int:
            return sum(c for q, s, c in app.counts() if q == QUEUE and s == state)

        if count("queued") != n:
            raise RuntimeError(f"cinejobs: {count('queued')} jobs queued, expected {n}")
        return (lambda: n - count("succeeded")), (lambda: count("queued") < n)

    def enqueue_celery(self, workload: str, n: int) -> tuple[Callable[[], int], Callable[[], bool]]:
        from process_apps import celery_app

        client = self.celery_redis
        client.flushdb()
        if workload == "noop":
            for _ in range(n):
                celery_app.noop.delay()
        else:
            for _ in range(n):
                celery_app.spin.delay(self.spin_n)
        if client.llen(CELERY_QUEUE) != n:
            raise RuntimeError(f"celery: {client.llen(CELERY_QUEUE)} messages queued, expected {n}")

        # A prefork worker acknowledges a message as its pool receives it (acks_late off): the
        # queue plus the unacknowledged hash is what has not started yet; the last job ends
        # one job's time after it leaves them.
        def remaining() -> int:
            return int(client.llen(CELERY_QUEUE)) + int(client.hlen("unacked"))

        return remaining, (lambda: int(client.llen(CELERY_QUEUE)) < n)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a warm shutdown for both engines), SIGKILL to the group past 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- report ----


@dataclass
class Summary:
    config: str
    label: str
    layout: str
    workload: str
    jobs: int
    median: float
    low: float
    high: float
    cpu_share: dict[str, float]  # median share of 2 cores used in the window, by process kind
    redis_calls_per_job: float  # median
    switches_per_job: float  # median


def summarize(runs: list[Run], configs: list[Config]) -> list[Summary]:
    out = []
    for config in configs:
        for workload in WORKLOADS:
            mine = [r for r in runs if r.config == config.key and r.workload == workload]
            if not mine:
                continue
            rates = [r.jobs_per_s for r in mine]

            def share(part: Callable[[Run], float], mine: list[Run] = mine) -> float:
                return round(statistics.median(part(r) / r.seconds for r in mine), 2)

            out.append(
                Summary(
                    config.key, config.label, config.layout, workload, mine[0].jobs,
                    round(statistics.median(rates)), round(min(rates)), round(max(rates)),
                    {"main": share(lambda r: r.cpu_main_s),
                     "children": share(lambda r: r.cpu_children_s),
                     "redis": share(lambda r: r.cpu_redis_s),
                     "others": share(lambda r: r.cpu_others_s),
                     "children_wait": share(lambda r: r.children_wait_s)},
                    round(statistics.median(r.redis_calls_per_job for r in mine), 2),
                    round(statistics.median(r.switches_per_job for r in mine), 1),
                )
            )  # fmt: skip
    return out


def find(summaries: list[Summary], config: str, workload: str) -> Summary | None:
    for s in summaries:
        if s.config == config and s.workload == workload:
            return s
    return None


def ratios(summaries: list[Summary]) -> list[str]:
    lines = []
    thread_cpu = find(summaries, "thread", "cpu")
    for key in ("p2c1", "p2c4"):
        proc_cpu = find(summaries, key, "cpu")
        if thread_cpu and proc_cpu:
            ratio = proc_cpu.median / thread_cpu.median
            verdict = "met" if ratio >= 2 else "missed"
            lines.append(
                f"- CPU-bound, {proc_cpu.label} / thread mode: {proc_cpu.median:,} / "
                f"{thread_cpu.median:,} = {ratio:.2f}x (issue 13 asks >= 2x: {verdict})"
            )
    for workload, want in (("noop", 10.0), ("cpu", None)):
        procs = [s for s in summaries if s.workload == workload and s.config.startswith("p")]
        celeries = [s for s in summaries if s.workload == workload and s.config.startswith("cel")]
        if procs and celeries:
            best = max(procs, key=lambda s: s.median)
            best_celery = max(celeries, key=lambda s: s.median)
            ratio = best.median / best_celery.median
            asked = (
                f" (issue 13 asks >= {want:g}x: {'met' if ratio >= want else 'missed'})"
                if want
                else ""
            )
            lines.append(
                f"- {WORKLOADS[workload]}, best cinejobs process mode ({best.label}) / best "
                f"Celery prefork ({best_celery.label}): {best.median:,} / {best_celery.median:,} "
                f"= {ratio:.1f}x{asked}"
            )
    return lines


def table(summaries: list[Summary], header: str, repeats: int) -> str:
    lines = [
        header,
        "",
        f"| row | processes and threads | workload | jobs per run | jobs/s, median of "
        f"{repeats} | range (min-max) | cores used in the window: worker main / its children / "
        f"redis-server / everything else | children waiting for a CPU (cores) | Redis commands per "
        f"job | worker context switches per job |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for s in summaries:
        cpu = s.cpu_share
        lines.append(
            f"| {s.label} | {s.layout} | {WORKLOADS[s.workload]} | {s.jobs:,} | {s.median:,} | "
            f"{s.low:,}-{s.high:,} | {cpu['main']:.2f} / {cpu['children']:.2f} / "
            f"{cpu['redis']:.2f} / {cpu['others']:.2f} | {cpu['children_wait']:.2f} | "
            f"{s.redis_calls_per_job:.2f} | "
            f"{s.switches_per_job:.1f} |"
        )
    return "\n".join(lines)


def short_label(label: str) -> str:
    """A row's label on two or three short lines, for the chart's axis."""
    return (
        label.replace("cinejobs ", "")
        .replace(" mode, ", "\n")
        .replace(", C=", " C=")
        .replace("prefork, ", "prefork\n")
    )


def chart(summaries: list[Summary], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(14, 5.5))
    for ax, (workload, name) in zip(axes, WORKLOADS.items(), strict=True):
        mine = [s for s in summaries if s.workload == workload]
        xs = range(len(mine))
        colors = ["tab:orange" if s.config.startswith("cel") else "tab:blue" for s in mine]
        errors = [[s.median - s.low for s in mine], [s.high - s.median for s in mine]]
        ax.bar(xs, [s.median for s in mine], color=colors, yerr=errors, capsize=3)
        for x, s in zip(xs, mine, strict=True):
            ax.annotate(f"{s.median:,}", (x, s.high), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([short_label(s.label) for s in mine], fontsize=7)
        if workload == "noop":
            ax.set_yscale("log")
            ax.set_ylabel("jobs/s (log scale)")
        else:
            ax.set_ylabel("jobs/s")
        ax.set_title(name)
    fig.suptitle(textwrap.fill(title, 150), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict[str, str]:
    out = {}
    for name in ("cinejobs", "celery", "kombu", "redis"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noop-jobs", type=int, default=20_000, help="cinejobs no-op jobs a run")
    parser.add_argument("--celery-jobs", type=int, default=2_000, help="Celery no-op jobs a run")
    parser.add_argument("--cpu-jobs", type=int, default=2_000, help="CPU-bound jobs a run (both)")
    parser.add_argument("--spin-ms", type=float, default=5.0, help="CPU-bound job's duration")
    parser.add_argument("--only", default="noop,cpu", help="workloads: noop, cpu")
    parser.add_argument(
        "--rows", default=",".join(c.key for c in CONFIGS), help="rows to run, by key"
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--name", default="processes", help="base name of the result files")
    options = parser.parse_args()
    workloads = [w for w in WORKLOADS if w in options.only.split(",")]
    wanted = options.rows.split(",")
    configs = [c for c in CONFIGS if c.key in wanted]

    runs: list[Run] = []
    with (
        RedisServer(extra_args=("--appendonly", "no")) as server,
        tempfile.TemporaryDirectory(prefix="cinejobs-bench-processes-") as tmp,
    ):
        bench = Bench(server, options, Path(tmp))
        bench.spin_n, spin_s = calibrate(options.spin_ms / 1000)
        bench.spin_ms = spin_s * 1000
        print(f"spin({bench.spin_n:,}) takes {bench.spin_ms:.2f} ms here", file=sys.stderr)
        redis_version = str(bench.cinejobs_redis.info("server")["redis_version"])
        started = time.monotonic()
        for repeat in range(options.repeats):
            for workload in workloads:
                for config in configs:
                    run = bench.run(config, workload, repeat)
                    runs.append(run)
                    print(
                        f"  [{repeat + 1}/{options.repeats}] {config.label}, {workload}: "
                        f"{run.jobs_per_s:,.0f} jobs/s ({run.counted:,} in {run.seconds:.2f} s; "
                        f"CPU s main {run.cpu_main_s}, children {run.cpu_children_s}, "
                        f"redis {run.cpu_redis_s}, others {run.cpu_others_s}; "
                        f"{run.redis_calls_per_job} Redis commands and "
                        f"{run.switches_per_job} context switches a job; children waited "
                        f"{run.children_wait_s} s for a CPU)",
                        file=sys.stderr,
                    )
        total_s = time.monotonic() - started

    summaries = summarize(runs, configs)
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "versions": versions(),
        "spin_n": bench.spin_n,
        "spin_ms": round(bench.spin_ms, 3),
        "seconds": round(total_s, 1),
    }
    header = (
        f"One redis-server {redis_version} (appendonly no) on loopback, cinejobs on DB 0 (prefix "
        f"{CINEJOBS_PREFIX!r}), Celery {machine['versions'].get('celery', '?')} on DB 1; "
        f"CPU-bound job spin({bench.spin_n:,}) = {bench.spin_ms:.2f} ms of CPU; "
        f"{machine['cpus']} CPUs, Python {machine['python']}, {machine['date']}; "
        f"whole run {total_s:.0f} s"
    )
    text = table(summaries, header, options.repeats)
    notes = ratios(summaries)
    if notes:
        text += "\n\n" + "\n".join(notes)
    print(text)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / f"{options.name}.md").write_text(text + "\n")
    (options.out / f"{options.name}.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "summaries": [asdict(s) for s in summaries],
                "runs": [asdict(r) for r in runs],
                "ratios": notes,
            },
            indent=2,
        )
        + "\n"
    )
    if summaries and len(workloads) == len(WORKLOADS):
        chart(summaries, options.out / f"{options.name}.png", header)


if __name__ == "__main__":
    main()
