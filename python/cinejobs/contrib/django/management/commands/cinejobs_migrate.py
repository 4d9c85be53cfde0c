"""``manage.py cinejobs_migrate``: create or upgrade the cinejobs schema of the project's
PostgreSQL broker (the ``cinejobs migrate`` command)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cinejobs import cli

from ...project import app


class Command(BaseCommand):
    help = "Apply cinejobs' PostgreSQL migrations to the project's broker (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        code = cli.main(["migrate", "--broker", app.broker_url])
        if code:
            raise CommandError(f"cinejobs migrate exited with status {code}", returncode=code)
