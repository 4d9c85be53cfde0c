"""``manage.py cinejobs_worker``: the ``cinejobs worker`` command on the project's App (its
tasks from every installed app's jobs.py, its broker from settings)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cinejobs import cli
from cinejobs.joblog import LOG_FORMATS, LOG_LEVELS

from ...conf import cinejobs_settings


class Command(BaseCommand):
    help = "Run a cinejobs worker for this project's tasks until SIGTERM or SIGINT."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--queues", help="comma-separated queues (default: CINEJOBS QUEUES)")
        parser.add_argument("--concurrency", type=int, help="handler threads")
        parser.add_argument("--grace", type=float, help="seconds running jobs get on stop")
        parser.add_argument("--lease", type=float, help="lease length in seconds")
        parser.add_argument(
            "--processes", type=int, help="process mode: child processes that run the tasks"
        )
        parser.add_argument(
            "--hard-timeout", type=float, help="process mode: default hard time limit (s)"
        )
        parser.add_argument(
            "--max-jobs-per-child", type=int, help="process mode: replace a child after N jobs"
        )
        parser.add_argument(
            "--max-memory-per-child",
            type=int,
            help="process mode: replace a child whose resident memory is over MB",
        )
        parser.add_argument(
            "--log-level", choices=LOG_LEVELS, help="least level logged on stderr (default: info)"
        )
        parser.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            help="text, or json: one object per line, for log shippers (default: text)",
        )
        parser.add_argument(
            "--with-scheduler",
            action="store_true",
            help="also run a scheduler for the project's schedules in this process",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        conf = cinejobs_settings()
        argv = ["worker", "--app", "cinejobs.contrib.django.project:setup_app"]
        queues = options["queues"] or ",".join(conf.get("QUEUES", []))
        if queues:
            argv += ["--queues", queues]
        concurrency = options["concurrency"] or conf.get("CONCURRENCY")
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        for name in (
            "grace",
            "lease",
            "processes",
            "hard_timeout",
            "max_jobs_per_child",
            "max_memory_per_child",
            "log_level",
            "log_format",
        ):
            if options[name] is not None:
                argv += ["--" + name.replace("_", "-"), str(options[name])]
        if options["with_scheduler"]:
            argv.append("--with-scheduler")
        code = cli.main(argv)
        if code:
            raise CommandError(f"cinejobs worker exited with status {code}", returncode=code)
