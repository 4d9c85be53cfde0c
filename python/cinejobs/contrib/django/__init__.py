"""Django integration: add ``"cinejobs.contrib.django"`` to INSTALLED_APPS.

- One cinejobs App for the project, ``cinejobs.contrib.django.app``; tasks are declared with
  ``@app.task`` in each installed app's ``jobs.py``, imported when Django starts.
- Settings in ``CINEJOBS = {...}`` (see :mod:`.conf`): the broker defaults to the project's
  own PostgreSQL database when it has one (schema ``cinejobs``), else ``$CINEJOBS_BROKER``,
  else SQLite.
- ``enqueue_on_commit(task, *args, **kwargs)``: the job follows the surrounding transaction.
- Periodic jobs in ``CINEJOBS["SCHEDULES"]`` (or ``@app.periodic`` in jobs.py), run by
  ``cinejobs_scheduler``.
- Management commands ``cinejobs_worker``, ``cinejobs_scheduler`` and ``cinejobs_migrate``.
- A read-only staff page of jobs and schedules, mounted with
  ``path("admin/cinejobs/", include("cinejobs.contrib.django.urls"))``.
"""

from __future__ import annotations

from .enqueue import enqueue_on_commit
from .project import app

__all__ = ["app", "enqueue_on_commit"]
