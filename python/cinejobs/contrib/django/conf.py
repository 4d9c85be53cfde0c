"""The ``CINEJOBS`` setting, read once Django's settings are ready.

CINEJOBS = {
    "BROKER_URL": "redis://localhost:6379/0",  # default: the project's PostgreSQL database
    "SCHEMA": "cinejobs",                      # when the broker is that database
    "QUEUES": ["default"],                     # what cinejobs_worker consumes by default
    "CONCURRENCY": 8,
    "SCHEDULES": {                             # periodic jobs, run by cinejobs_scheduler
        "nightly-cleanup": {"task": "films.cleanup", "cron": "0 2 * * *", "tz": "Europe/Paris"},
        "heartbeat": {"task": "ops.ping", "every": "30s"},
    },
}

Each SCHEDULES entry takes App.schedule()'s options (cron, every or run_at; tz, args,
kwargs, queue, priority, grace, catch_up); its key is the schedule's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ...app import BUILTIN_TASKS, App, Task, default_broker_url
from ...errors import ConfigError

KNOWN = {"BROKER_URL", "SCHEMA", "QUEUES", "CONCURRENCY", "SCHEDULES"}
POSTGRES_ENGINES = {"django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"}


def cinejobs_settings() -> dict[str, Any]:
    from django.conf import settings

    raw = getattr(settings, "CINEJOBS", {}) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"settings.CINEJOBS must be a dict, got {type(raw).__qualname__}")
    unknown = set(raw) - KNOWN
    if unknown:
        raise ConfigError(
            f"settings.CINEJOBS has unknown key(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(sorted(KNOWN))}"
        )
    return dict(raw)


def database_broker_url(database: dict[str, Any], schema: str) -> str | None:
    """The PostgreSQL broker URL of a Django DATABASES entry, or None when it is not
    PostgreSQL."""
    if database.get("ENGINE") not in POSTGRES_ENGINES:
        return None
    user = quote(str(database.get("USER") or ""), safe="")
    password = quote(str(database.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(database.get("HOST") or "")
    port = str(database.get("PORT") or "")
    hostport = f"[{host}]" if ":" in host else host
    if port:
        hostport += f":{port}"
    query = {"schema": schema}
    for key, value in (database.get("OPTIONS") or {}).items():
        if key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name"):
            query[key] = str(value)
    name = quote(str(database.get("NAME") or ""), safe="")
    if host.startswith("/"):  # a Unix socket directory: libpq takes it as the host parameter
        query["host"] = host
        hostport = ""
    return f"postgresql://{auth}{hostport}/{name}?{urlencode(query)}"


def broker_url() -> str:
    """CINEJOBS["BROKER_URL"], else the default database when it is PostgreSQL, else
    $CINEJOBS_BROKER or SQLite."""
    from django.conf import settings

    conf = cinejobs_settings()
    if conf.get("BROKER_URL"):
        return str(conf["BROKER_URL"])
    default = settings.DATABASES.get("default", {})
    return database_broker_url(default, str(conf.get("SCHEMA", "cinejobs"))) or default_broker_url()


def configure_schedules(app: App) -> None:
    """Declare CINEJOBS["SCHEDULES"] on the project's app. Runs once every installed app's
    jobs.py is imported, so a schedule of a task no app declares fails at start-up, naming it,
    instead of ticking jobs that no worker would run."""
    schedules = cinejobs_settings().get("SCHEDULES") or {}
    if not isinstance(schedules, Mapping):
        raise ConfigError(
            'settings.CINEJOBS["SCHEDULES"] must be a dict of schedule name to options, got '
            f"{type(schedules).__qualname__}"
        )
    for name, entry in schedules.items():
        task = entry.get("task") if isinstance(entry, Mapping) else None
        if isinstance(task, Task):
            continue
        if isinstance(task, str) and task not in app.tasks and task not in BUILTIN_TASKS:
            raise ConfigError(
                f'settings.CINEJOBS["SCHEDULES"][{name!r}]: no task named {task!r}; declare it '
                "with @app.task in an installed app's jobs.py (known: "
                f"{', '.join(sorted(app.tasks)) or 'none'})"
            )
    app.configure_schedules(schedules)
