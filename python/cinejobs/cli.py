"""The ``cinejobs`` command: run workers, inspect and enqueue jobs, run the demo.

Errors a user can cause (a bad broker URL, a database that cannot be opened, bad ``--args``
JSON, an ``--app`` that cannot be imported) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, _core
from ._redact import redact
from ._status import StatusLine, format_counts
from .app import (
    BUILTIN_TASKS,
    DEFAULT_BROKER_URL,
    App,
    Task,
    default_broker_url,
    run_until_signalled,
)
from .errors import CinejobsError, UniqueConflict
from .handle import STATES
from .joblog import LOG_FORMATS, LOG_LEVELS, configure_logging
from .metrics import DEFAULT_HOST as DEFAULT_METRICS_HOST
from .metrics import MetricsServer

__all__ = ["load_app", "main"]

EXIT_USAGE = 2


class CliError(Exception):
    """A mistake in the command line or its environment, reported in one line (exit 2)."""


# ---- helpers ----


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (attribute defaults to ``app``; may be dotted, or a function
    returning an App) with the current directory on sys.path."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise CliError(
            f"--app {spec!r} names no module: use module:attribute, e.g. myproj.jobs:app"
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CliError(
                f"cannot import --app {spec!r}: no module named {exc.name!r} (run from the "
                "directory that contains it, or add that directory to PYTHONPATH)"
            ) from None
        raise CliError(f"importing --app module {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise CliError(
            f"importing --app module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(
                f"--app {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(obj, App) and callable(obj):
        obj = obj()
    if not isinstance(obj, App):
        raise CliError(f"--app {spec!r} is a {type(obj).__qualname__}, not a cinejobs.App")
    # The child processes of process mode import the app the same way.
    obj._import_spec = spec
    return obj


def _app_for(args: argparse.Namespace) -> App:
    spec = getattr(args, "app", None)
    if spec:
        app = load_app(spec)
        if args.broker:
            app.use_broker(args.broker)
        return app
    return App(args.broker or default_broker_url())


def _parse_json(text: str, option: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, kind):
        want = "array, e.g. '[1, \"a\"]'" if kind is list else "object, e.g. '{\"k\": 1}'"
        raise CliError(f"{option} must be a JSON {want}; got {type(value).__name__}")
    return value


def _parse_queues(text: str | None) -> list[str] | None:
    if text is None:
        return None
    queues = [q.strip() for q in text.split(",") if q.strip()]
    if not queues:
        raise CliError("--queues names no queue: use a comma-separated list, e.g. default,enrich")
    return queues


def _fmt_time(ms: int) -> str:
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is at most 65535, got {value}")
    return value


def _bind_metrics(args: argparse.Namespace, render: Callable[[], str]) -> MetricsServer | None:
    """Take --metrics-port before the worker starts, so a port in use fails at once."""
    if args.metrics_port is None:
        return None
    try:
        return MetricsServer(render, args.metrics_port, args.metrics_host).bind()
    except OSError as exc:
        raise CliError(
            f"cannot serve metrics on {args.metrics_host}:{args.metrics_port} "
            f"({exc.strerror or exc}): is another worker using it? Choose another --metrics-port"
        ) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


# ---- commands ----


def load_celery_app(spec: str) -> Any:
    """Import a Celery app named ``module:attribute`` (as ``celery -A`` takes it)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise CliError(f"--celery {spec!r} names no module: use e.g. proj.celery:app")
    try:
        from celery import Celery
    except ImportError:
        raise CliError("--celery needs Celery installed (pip install 'celery[redis]')") from None
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in (attr or "app").split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"cannot load --celery {spec!r}: {exc}") from None
    if not isinstance(obj, Celery):
        raise CliError(f"--celery {spec!r} is a {type(obj).__qualname__}, not a Celery app")
    return obj


def cmd_worker(args: argparse.Namespace) -> int:
    if args.celery and getattr(args, "app", None):
        raise CliError("--celery and --app name two apps: give one")
    celery_app: Any = load_celery_app(args.celery) if args.celery else None
    app = None if celery_app is not None else _app_for(args)
    broker_url = app.broker_url if app is not None else celery_app.conf.broker_url
    queues = _parse_queues(args.queues)
    # Only what was given: the core fills in the rest (cinejobs._core.WorkerOptions).
    options: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "grace",
            "lease",
            "poll_interval",
            "processes",
            "hard_timeout",
            "max_jobs_per_child",
            "max_memory_per_child",
        )
        if getattr(args, name) is not None
    }
    if celery_app is not None and options.get("processes"):
        raise CliError(
            "--processes runs cinejobs tasks in child processes; a --celery worker runs in "
            "thread mode only (use celery's own prefork pool for Celery tasks that need it)"
        )
    for name in ("hard_timeout", "max_jobs_per_child", "max_memory_per_child"):
        if name in options and not options.get("processes"):
            flag = "--" + name.replace("_", "-")
            raise CliError(
                f"{flag} needs process mode (--processes N): a thread cannot be killed or "
                "recycled, a child process can"
            )
    status = StatusLine(sys.stdout, prefix="cinejobs worker: ")
    configure_logging(args.log_level, args.log_format, status=status)
    grace = options.get("grace", _core.WorkerOptions().grace)

    if args.with_scheduler and app is None:
        raise CliError("--with-scheduler runs cinejobs schedules; a --celery worker has none")
    scheduler = app.scheduler(**_scheduler_options(args)) if args.with_scheduler and app else None

    ran: list[Any] = []  # the worker, for its final counts and the metrics server
    metrics = _bind_metrics(args, lambda: ran[0].metrics_text())

    def started(worker: Any) -> None:
        ran.append(worker)
        tasks = ", ".join(worker.task_names) or "none"
        builtins = (
            ""
            if celery_app is not None
            else " (+ builtins cinejobs.noop, cinejobs.sleep, cinejobs.prune)"
        )
        processes = getattr(worker, "processes", 0)
        mode = (
            f"{processes} child processes x concurrency {worker.concurrency}"
            if processes
            else f"concurrency {worker.concurrency}"
        )
        status.log(
            f"cinejobs worker {os.getpid()} started: broker {redact(broker_url)}, queues "
            f"{','.join(worker.queues)}, {mode}; tasks: {tasks}" + builtins
        )
        if metrics is not None:
            metrics.start()
            status.log(f"cinejobs worker: metrics on {metrics.url}")
        if scheduler is not None:
            scheduler.start()
            status.log(f"cinejobs worker: scheduler running {', '.join(scheduler.names)}")

    def stopping(worker: Any, signum: int) -> None:
        if scheduler is not None:
            scheduler.stop()
        name = signal.Signals(signum).name if signum else "a signal"
        status.log(
            f"cinejobs worker: {name} received, stopping: running jobs get up to {grace:g} s "
            "to finish, the rest go back to the queue (send it again to quit at once)"
        )

    if celery_app is not None:
        from .contrib.celery.worker import CeleryWorker

        def make_worker() -> Any:
            return CeleryWorker(celery_app, queues=queues, concurrency=args.concurrency, **options)
    else:
        assert app is not None

        def make_worker() -> Any:
            return app.worker(queues, args.concurrency, **options)

    try:
        report = run_until_signalled(
            make_worker,
            on_start=started,
            on_status=lambda w: status.update(w.stats()),
            on_stopping=stopping,
            status_interval=0.5 if status.tty else 1.0,
        )
    finally:
        if metrics is not None:
            metrics.stop()
    status.finish()
    status.log(
        f"cinejobs worker stopped: {report['finished']} running job(s) finished, "
        f"{report['returned']} returned to the queue"
        + (f"; {format_counts(ran[0].stats(), None)}" if ran else "")
    )
    if not report.get("clean", True):
        # Handlers still running Python code past the grace period cannot be interrupted; their
        # jobs are already back in the queue, so leave without waiting for them.
        status.log("cinejobs worker: some handlers were still busy; exiting without them")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _scheduler_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.history_retention is not None:
        options["history_retention"] = args.history_retention
    if args.prune_every is not None:
        options["prune_every"] = args.prune_every
    return options


def cmd_scheduler(args: argparse.Namespace) -> int:
    app = _app_for(args)
    if not app.declared_schedules and args.prune_every == 0:
        raise CliError(f"--app {args.app!r} declares no schedule and --prune-every is 0")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with app.scheduler(**_scheduler_options(args)) as scheduler:
            print(
                f"cinejobs scheduler {os.getpid()} started: broker {redact(app.broker_url)}; "
                f"schedules: "
                f"{', '.join(scheduler.names)}",
                flush=True,
            )
            while not stop.wait(0.2):
                pass
        print("cinejobs scheduler stopped", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    app = _app_for(args)
    statuses = app.schedules()

    def iso(when: _dt.datetime | None) -> str | None:
        return None if when is None else when.isoformat()

    if args.json:
        out = [
            {
                "name": st.name,
                "spec": st.spec,
                "tz": st.tz,
                "last_tick": iso(st.last_tick),
                "next_tick": iso(st.next_tick),
                "last_job_id": st.last_job_id,
                "outcome": st.outcome,
            }
            for st in statuses
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not statuses:
        print(f"no schedules declared in the app or recorded in {redact(app.broker_url)}")
        return 0

    def when(value: _dt.datetime | None) -> str:
        return "-" if value is None else _fmt_time(round(value.timestamp() * 1000))

    rows = [
        [
            st.name,
            st.spec,
            st.tz,
            when(st.last_tick),
            when(st.next_tick),
            st.last_job_id or "-",
            st.outcome or "-",
        ]
        for st in statuses
    ]
    print(f"schedules in {redact(app.broker_url)} (times are local)")
    headers = ["NAME", "SPEC", "TZ", "LAST TICK", "NEXT TICK", "LAST JOB", "OUTCOME"]
    print(_table(headers, rows, set()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    app = _app_for(args)
    counts = app.counts()
    if args.json:
        out: dict[str, dict[str, int]] = {}
        for queue, state, n in counts:
            out.setdefault(queue, {})[state] = n
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not counts:
        print(f"no jobs in {redact(app.broker_url)}")
        return 0
    per_queue: dict[str, dict[str, int]] = {}
    for queue, state, n in counts:
        per_queue.setdefault(queue, {})[state] = n
    rows = []
    totals = dict.fromkeys(STATES, 0)
    for queue in sorted(per_queue):
        row = [queue]
        for state in STATES:
            n = per_queue[queue].get(state, 0)
            totals[state] += n
            row.append(str(n))
        row.append(str(sum(per_queue[queue].values())))
        rows.append(row)
    if len(rows) > 1:
        rows.append(["(all)", *(str(totals[s]) for s in STATES), str(sum(totals.values()))])
    print(f"jobs in {redact(app.broker_url)}")
    print(_table(["QUEUE", *(s.upper() for s in STATES), "TOTAL"], rows, set(range(1, 8))))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    app = _app_for(args)
    jobs = app.jobs(state=args.state, queue=args.queue, task=args.task, limit=args.limit)
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    if not jobs:
        print("no matching jobs")
        return 0
    rows = []
    for job in jobs:
        if job["error"]:
            detail = f"{job['error']['type']}: {job['error']['message']}"
        elif job["state"] == "succeeded":
            detail = "-> " + json.dumps(job["result"])
        elif job["progress"]:
            p = job["progress"]
            detail = f"{p['fraction'] * 100:.0f}% {p['step']} {p['message']}".strip()
        else:
            detail = ""
        rows.append(
            [
                job["id"],
                job["state"],
                job["task"],
                job["queue"],
                f"{job['attempt']}/{job['max_attempts']}",
                _fmt_time(job["created_at"]),
                _shorten(detail, 60),
            ]
        )
    print(_table(["ID", "STATE", "TASK", "QUEUE", "ATTEMPT", "CREATED", "DETAIL"], rows, {4}))
    return 0


def _task_app(args: argparse.Namespace) -> tuple[App, str | None]:
    """The app whose task `args.task` names, so that the job takes the task's queue, attempts
    and other options: --app's (which must know the task), else the app of the task found by
    importing its module (myproj.jobs.send_mail -> myproj.jobs), else an app that knows no
    task, with a note (printed once the job is stored) saying the defaults apply."""
    name = args.task
    if getattr(args, "app", None):
        app = _app_for(args)
        if name not in app.tasks and name not in BUILTIN_TASKS:
            known = ", ".join(sorted(app.tasks)) or "none"
            raise CliError(f"--app {args.app!r} has no task {name!r} (its tasks: {known})")
        return app, None
    module_name, _, attr = name.rpartition(".")
    if module_name and name not in BUILTIN_TASKS:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        try:
            task = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            task = None
        except Exception as exc:
            raise CliError(
                f"importing {module_name!r} to find task {name!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if isinstance(task, Task) and task.name == name:
            if args.broker:
                task.app.use_broker(args.broker)
            return task.app, None
        note = (
            f"cinejobs enqueue: note: task {name!r} was not found by importing {module_name!r}; "
            "the job takes the default queue and attempts (pass --app to use the task's own)"
        )
        return App(args.broker or default_broker_url()), note
    return App(args.broker or default_broker_url()), None


def cmd_enqueue(args: argparse.Namespace) -> int:
    job_args = _parse_json(args.args, "--args", list)
    job_kwargs = _parse_json(args.kwargs, "--kwargs", dict)
    app, note = _task_app(args)
    options: dict[str, Any] = {}
    for key in ("queue", "delay", "priority", "unique_key", "max_attempts", "timeout"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    try:
        handle = app.enqueue(args.task, job_args, job_kwargs, **options)
    except UniqueConflict as exc:
        raise CliError(
            f"not enqueued: unique key {exc.unique_key!r} is held by live job {exc.existing_id}"
        ) from None
    except TypeError as exc:
        raise CliError(f"not enqueued: {exc}") from None
    print(handle.id)
    if note is not None:
        print(note, file=sys.stderr)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    url = args.broker or default_broker_url()
    if args.app:
        url = args.broker or load_app(args.app).broker_url
    applied = _core.migrate(url)
    if applied:
        print(f"applied migration(s) {', '.join(map(str, applied))} to {redact(url)}")
    else:
        print(f"{redact(url)}: schema is up to date")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, run_tmdb_demo

    if args.tour:
        return run_demo(args.broker, concurrency=args.concurrency)
    return run_tmdb_demo(args.broker, concurrency=args.concurrency)


def cmd_enrich(args: argparse.Namespace) -> int:
    from .enrich import EnrichSettings, enrich, read_list, source_name

    films = read_list(args.file)
    settings = EnrichSettings(
        broker=args.broker or default_broker_url(),
        concurrency=args.concurrency,
        store=args.store,
        rate=args.rate,
        json_out=args.json_out,
        timeout=args.timeout,
    )
    enrich(films, settings, source=source_name(args.file))
    return 0


# ---- parser ----


def _add_scheduler_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--history-retention",
        type=_seconds,
        metavar="S",
        help="seconds of schedule history kept by the built-in prune job (default: 7 days)",
    )
    p.add_argument(
        "--prune-every",
        type=_seconds,
        metavar="S",
        help="seconds between built-in prune jobs; 0 turns them off (default: 3600)",
    )


def build_parser() -> argparse.ArgumentParser:
    broker_help = (
        "broker URL: sqlite:///relative.db or sqlite:////absolute/path.db "
        f"(default: $CINEJOBS_BROKER, else {DEFAULT_BROKER_URL})"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--broker", metavar="URL", help=broker_help)

    parser = argparse.ArgumentParser(
        prog="cinejobs",
        description="cinejobs: background jobs with a C++ core. Run workers, inspect queues, "
        "enqueue jobs, or try it all with `cinejobs demo`.",
        epilog="Environment: CINEJOBS_BROKER sets the default broker URL. "
        "Run `cinejobs COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"cinejobs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    w = sub.add_parser(
        "worker",
        parents=[common],
        help="run a worker until SIGTERM/SIGINT",
        description="Run a worker for the tasks of an app until SIGTERM or SIGINT (Ctrl-C), "
        "then stop gracefully: stop reserving, let running jobs finish for up to --grace "
        "seconds, return the rest to their queue. A second signal quits at once. Shows a live "
        "status line on a terminal, plain log lines when piped.",
        epilog="example: cinejobs worker --app myproj.jobs:app --queues default,enrich "
        "--concurrency 16",
    )
    w.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="the cinejobs.App whose tasks to run, imported with the current directory on "
        "sys.path (ATTR defaults to 'app'); without it only the builtins cinejobs.noop and "
        "cinejobs.sleep run. --broker overrides the app's own broker URL",
    )
    w.add_argument(
        "--celery",
        metavar="MODULE:ATTR",
        help="run an unmodified Celery app's tasks instead (as 'celery -A MODULE:ATTR worker' "
        "would), consuming the messages its producers send to its Redis broker and storing "
        "results in its Redis result backend; --queues defaults to the app's default queue "
        "(see docs/celery.md)",
    )
    w.add_argument(
        "--queues",
        metavar="Q1,Q2",
        help="comma-separated queues to consume (default: the queues of the app's tasks, "
        "else 'default')",
    )
    defaults = _core.WorkerOptions()  # the core's defaults, shown in the help
    w.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="jobs run at once, and the most this worker reserves; with --processes, jobs "
        f"each child runs at once (default: {defaults.concurrency})",
    )
    w.add_argument(
        "--grace",
        type=_seconds,
        metavar="S",
        help="seconds running jobs get to finish on stop before they return to the queue "
        f"(default: {defaults.grace:g})",
    )
    w.add_argument(
        "--lease",
        type=_seconds,
        metavar="S",
        help="seconds a reserved job stays leased without renewal; a dead worker's jobs are "
        f"queued again after it (default: {defaults.lease:g})",
    )
    w.add_argument(
        "--poll-interval",
        type=_seconds,
        metavar="S",
        help=f"longest idle wait between looks for new jobs (default: {defaults.poll_interval:g})",
    )
    w.add_argument(
        "--processes",
        type=_positive_int,
        metavar="N",
        help="process mode: run the app's tasks in N child processes (spawned, each importing "
        "the app once) while this process alone talks to the broker; a child that crashes, "
        "runs past its hard time limit or is recycled is replaced, failing or retrying only "
        "its own jobs (default: thread mode, every job on this process's threads)",
    )
    w.add_argument(
        "--hard-timeout",
        type=_seconds,
        metavar="S",
        help="with --processes: the hard time limit of tasks that set no hard_timeout; the "
        "child running a job past it is killed (SIGTERM, then SIGKILL) and the job fails "
        "with JobTimeout or is retried (default: none)",
    )
    w.add_argument(
        "--max-jobs-per-child",
        type=_positive_int,
        metavar="N",
        help="with --processes: replace a child after N jobs (default: never)",
    )
    w.add_argument(
        "--max-memory-per-child",
        type=_positive_int,
        metavar="MB",
        help="with --processes: replace a child whose resident memory after a job is over MB "
        "megabytes; it finishes its jobs first (default: no limit)",
    )
    w.add_argument(
        "--with-scheduler",
        action="store_true",
        help="also run a scheduler for the app's schedules in this process (any number of "
        "schedulers may run: each tick is enqueued once)",
    )
    w.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="least level logged on stderr; info logs every job's start and end, warning only "
        "retries and failures (default: info)",
    )
    w.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text: one readable line per record, a failure's traceback under it; json: one "
        "JSON object per line, for log shippers (default: text)",
    )
    w.add_argument(
        "--metrics-port",
        type=_port,
        metavar="P",
        help="serve Prometheus metrics at http://HOST:P/metrics while the worker runs",
    )
    w.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        metavar="HOST",
        help="interface for --metrics-port (default: all, so Prometheus can scrape the worker "
        "from another machine or container; 127.0.0.1 keeps it to this machine)",
    )
    _add_scheduler_options(w)
    w.set_defaults(func=cmd_worker)

    sc = sub.add_parser(
        "scheduler",
        parents=[common],
        help="run a scheduler for an app's schedules until SIGTERM/SIGINT",
        description="Enqueue the ticks of an app's schedules (@app.periodic, app.schedule, "
        "app.configure_schedules) until SIGTERM or SIGINT. Run as many as you like, on as "
        "many machines: the broker enqueues each tick once. After downtime, each schedule's "
        "misfire policy (grace, catch_up) decides which missed ticks run. Also runs the "
        "built-in cinejobs.prune schedule, which deletes finished jobs past the broker's "
        "result TTL and tick history past --history-retention.",
        epilog="example: cinejobs scheduler --app myproj.jobs:app",
    )
    sc.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        required=True,
        help="the cinejobs.App whose schedules to run",
    )
    _add_scheduler_options(sc)
    sc.set_defaults(func=cmd_scheduler)

    ss = sub.add_parser(
        "schedules",
        parents=[common],
        help="list schedules with their last and next tick",
        description="List the schedules an app declares and those its broker recorded: spec, "
        "time zone, last tick, next tick, last job and its outcome.",
    )
    ss.add_argument("--app", metavar="MODULE:ATTR", help="the app whose schedules to list")
    ss.add_argument("--json", action="store_true", help="print JSON: a list of schedules")
    ss.set_defaults(func=cmd_schedules)

    s = sub.add_parser(
        "status",
        parents=[common],
        help="count jobs per queue and state",
        description="Print how many jobs each queue holds in each state.",
    )
    s.add_argument("--json", action="store_true", help="print JSON: {queue: {state: count}}")
    s.set_defaults(func=cmd_status)

    j = sub.add_parser(
        "jobs",
        parents=[common],
        help="list jobs",
        description="List jobs, newest first within the filters, with their error or result.",
        epilog="example: cinejobs jobs --state failed --queue enrich",
    )
    j.add_argument("--state", choices=STATES, help="only jobs in this state")
    j.add_argument("--queue", metavar="Q", help="only jobs of this queue")
    j.add_argument("--task", metavar="NAME", help="only jobs of this task")
    j.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N jobs (default: 50)"
    )
    j.add_argument(
        "--json", action="store_true", help="print the jobs as JSON, tracebacks included"
    )
    j.set_defaults(func=cmd_jobs)

    e = sub.add_parser(
        "enqueue",
        parents=[common],
        help="enqueue one job and print its id",
        description="Enqueue one job of TASK and print its id. The task need not be known "
        "here: a worker that does not know it fails the job with UnknownTask.",
        epilog="example: cinejobs enqueue myproj.jobs.send_mail --args '[42]' "
        "--kwargs '{\"urgent\": true}' --delay 60",
    )
    e.add_argument("task", metavar="TASK", help="the task name, e.g. myproj.jobs.send_mail")
    e.add_argument(
        "--args", default="[]", metavar="JSON", help="positional arguments as a JSON array"
    )
    e.add_argument(
        "--kwargs", default="{}", metavar="JSON", help="keyword arguments as a JSON object"
    )
    e.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="take the task's defaults (queue, attempts, timeout, priority) from this app",
    )
    e.add_argument("--queue", metavar="Q", help="queue (default: the task's, else 'default')")
    e.add_argument(
        "--delay", type=_seconds, metavar="S", help="run no sooner than S seconds from now"
    )
    e.add_argument("--priority", type=int, metavar="N", help="higher runs first (default: 0)")
    e.add_argument(
        "--unique-key",
        metavar="KEY",
        help="refuse the job while a live job holds KEY (exit 2, naming that job)",
    )
    e.add_argument(
        "--max-attempts", type=_positive_int, metavar="N", help="deliveries at most (default: 3)"
    )
    e.add_argument("--timeout", type=float, metavar="S", help="soft run-time limit in seconds")
    e.set_defaults(func=cmd_enqueue)

    m = sub.add_parser(
        "migrate",
        parents=[common],
        help="create or upgrade the broker's schema (PostgreSQL)",
        description="Apply the broker store's pending schema migrations, in order and under a "
        "lock, so it is safe to run from several deploys at once; running it again does "
        "nothing. PostgreSQL brokers need it before workers start (workers never alter the "
        "schema unless the URL says migrate=true); SQLite creates its schema itself.",
    )
    m.add_argument("--app", metavar="MODULE:ATTR", help="take the broker URL from this app")
    m.set_defaults(func=cmd_migrate)

    en = sub.add_parser(
        "enrich",
        parents=[common],
        help="enrich a film list from TMDB, with live progress and a summary",
        description="Read FILE (a Letterboxd export, a CSV with a title column, or one release "
        "name per line), store its films as a session in the broker's database, enrich each "
        "from TMDB on an embedded worker (queue tmdb, rate limited across every worker on "
        "the broker) and print a summary table. Credentials: TMDB_API_KEY or "
        "TMDB_READ_TOKEN; TMDB_BASE_URL points at another server.",
    )
    en.add_argument("file", metavar="FILE", help="the film list")
    en.add_argument("--json-out", metavar="PATH", help="write one JSON line per film to PATH")
    en.add_argument(
        "--store",
        metavar="URL",
        help="film store (SQLite or PostgreSQL URL; default: the broker's database)",
    )
    en.add_argument(
        "--rate",
        metavar="RATE",
        help="TMDB request limit shared by all workers, e.g. 40/10s (default: $TMDB_RATE_LIMIT, "
        "else 40/10s)",
    )
    en.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help=f"threads (default: {_core.WorkerOptions().concurrency})",
    )
    en.add_argument("--timeout", type=_seconds, metavar="S", help="give up waiting after S seconds")
    en.set_defaults(func=cmd_enrich)

    d = sub.add_parser(
        "demo",
        parents=[common],
        help="enrich a bundled list of 50 films on an embedded SQLite broker",
        description="Enrich a bundled list of 50 films from TMDB (with TMDB_API_KEY or "
        "TMDB_READ_TOKEN set) or from a local stand-in built from bundled fixtures (without), "
        "on an embedded worker with live progress, and print what happened. Needs no server. "
        "Uses a fresh temporary SQLite file unless --broker is given. --tour runs a tour of "
        "the job engine instead (progress, a retry, a failure, a cancelled scheduled job, a "
        "unique-key conflict).",
    )
    d.add_argument("--tour", action="store_true", help="tour the job engine's features instead")
    d.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help=f"worker threads (default: {_core.WorkerOptions().concurrency})",
    )
    d.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 for errors the user can fix)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except (CliError, CinejobsError) as exc:
        sys.stdout.flush()
        print(f"cinejobs {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
