"""Transactional enqueue through a real Django connection, run as its own process (Django's
settings are process-wide): ``python django_enqueue.py PORT SCHEMA`` enqueues one job inside a
``transaction.atomic()`` block that raises (rolled back) and one inside a block that commits,
and prints the two job ids, rolled back first."""

from __future__ import annotations

import sys

import django
from django.conf import settings


def main() -> None:
    port, schema = sys.argv[1], sys.argv[2]
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": port,
            }
        },
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection, transaction

    import cinejobs

    rolled_back = ""
    try:
        with transaction.atomic():
            rolled_back = cinejobs.postgres.enqueue(
                connection, "pg.add", 1, 2, schema=schema, queue="pg"
            )
            raise RuntimeError("the view failed")
    except RuntimeError:
        pass
    with transaction.atomic():
        committed = cinejobs.postgres.enqueue(connection, "pg.add", 2, 3, schema=schema, queue="pg")
    print(rolled_back, committed)


if __name__ == "__main__":
    main()
