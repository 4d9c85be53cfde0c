"""A read-only staff page of the project's jobs: counts per queue and state, the schedules with
their last and next ticks, and the latest jobs (filterable by state, queue and task), styled by
Django's admin templates."""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from ..._redact import redact
from ...handle import STATES
from ...schedules import ScheduleStatus
from .project import app

PAGE = 100


def _when(ms: int) -> str:
    if not ms:
        return ""
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _in_zone(when: _dt.datetime | None, tz: str) -> str:
    """A tick in its schedule's zone, so that a 02:00 Europe/Paris schedule reads 02:00."""
    if when is None:
        return ""
    try:
        zone: _dt.tzinfo = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # "-": recorded, not declared here
        zone = _dt.UTC
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _schedule_row(status: ScheduleStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "spec": status.spec,
        "tz": status.tz,
        "last_tick": _in_zone(status.last_tick, status.tz),
        "next_tick": _in_zone(status.next_tick, status.tz),
        "last_job_id": status.last_job_id or "",
        "outcome": status.outcome or "",
    }


@staff_member_required
def jobs(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state") or None
    if state not in (None, *STATES):
        state = None
    queue = request.GET.get("queue") or None
    task = request.GET.get("task") or None
    counts: dict[str, dict[str, int]] = {}
    for q, s, n in app.counts():
        counts.setdefault(q, {})[s] = n
    rows: list[dict[str, Any]] = []
    for job in app.jobs(state=state, queue=queue, task=task, limit=PAGE):
        error = job["error"] or {}
        progress = job["progress"] or {}
        rows.append(
            {
                "id": job["id"],
                "task": job["task"],
                "queue": job["queue"],
                "state": job["state"],
                "attempt": f"{job['attempt']}/{job['max_attempts']}",
                "progress": (
                    f"{progress.get('fraction', 0):.0%} {progress.get('step', '')}".strip()
                    if progress
                    else ""
                ),
                "error": redact(f"{error.get('type', '')}: {error.get('message', '')}")
                if error
                else "",
                "created": _when(job["created_at"]),
                "finished": _when(job["finished_at"]),
            }
        )
    # Ticks as the broker records them, whichever process runs the schedulers: a next tick
    # in the past means that no scheduler runs.
    schedules = [_schedule_row(s) for s in app.schedules(next_tick_from="broker")]
    context = {
        "title": "cinejobs: jobs",
        "broker": redact(app.broker_url),
        "states": STATES,
        "counts": [(q, [counts[q].get(s, 0) for s in STATES]) for q in sorted(counts)],
        "schedules": schedules,
        "jobs": rows,
        "filters": {"state": state or "", "queue": queue or "", "task": task or ""},
        "page": PAGE,
    }
    return TemplateResponse(request, "cinejobs/jobs.html", context)
