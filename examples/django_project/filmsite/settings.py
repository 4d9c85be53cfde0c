"""Settings of the filmsite example: one PostgreSQL database (from the FILMSITE_DB_* environment
variables) that also holds cinejobs' jobs, in the schema ``cinejobs``."""

import os

SECRET_KEY = os.environ.get("FILMSITE_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("FILMSITE_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "filmsite.urls"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "cinejobs.contrib.django",
    "films",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_db_name = os.environ.get("FILMSITE_DB_NAME", "filmsite")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db_name,
        "USER": os.environ.get("FILMSITE_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("FILMSITE_DB_PASSWORD", ""),
        "HOST": os.environ.get("FILMSITE_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("FILMSITE_DB_PORT", "5432"),
        # The test runner uses this same database, so that worker processes started by the
        # tests (which read these settings) share it with the test code.
        "TEST": {"NAME": _db_name},
    }
}

# The broker defaults to the database above (schema "cinejobs"). The schedules are run by
# `manage.py cinejobs_scheduler` (as many as you like: each tick is enqueued once) and their
# jobs by `manage.py cinejobs_worker`, which consumes the queue the films tasks use.
CINEJOBS = {
    "QUEUES": ["films"],
    "CONCURRENCY": 4,
    "SCHEDULES": {
        "films-cleanup-nightly": {
            "task": "films.cleanup",
            "cron": "0 2 * * *",
            "tz": TIME_ZONE,
            "kwargs": {"older_than_hours": 24},
        },
        "films-prune-weekly": {
            "task": "films.prune_job_ids",
            "cron": "30 3 * * sun",
            "tz": TIME_ZONE,
        },
    },
}
