"""``manage.py cinejobs_scheduler``: the ``cinejobs scheduler`` command on the project's App (the
schedules of ``CINEJOBS["SCHEDULES"]`` and of ``@app.periodic`` in every installed app's jobs.py,
its broker from settings). Any number may run: the broker enqueues each tick once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cinejobs import cli


class Command(BaseCommand):
    help = (
        "Enqueue the ticks of this project's schedules until SIGTERM or SIGINT (run one or "
        "several: each tick is enqueued once)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--prune-every",
            type=float,
            help="seconds between built-in prune jobs; 0 turns them off (default: 3600)",
        )
        parser.add_argument(
            "--history-retention",
            type=float,
            help="seconds of schedule history the prune job keeps (default: 7 days)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        argv = ["scheduler", "--app", "cinejobs.contrib.django:app"]
        for name in ("prune_every", "history_retention"):
            if options[name] is not None:
                argv += [f"--{name.replace('_', '-')}", str(options[name])]
        code = cli.main(argv)
        if code:
            raise CommandError(f"cinejobs scheduler exited with status {code}", returncode=code)
