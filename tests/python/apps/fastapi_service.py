"""The web service the FastAPI tests run under uvicorn: a jobs App on the broker in
$CINEJOBS_BROKER, its router mounted under /api, an embedded worker started by the lifespan
unless $EMBEDDED_WORKER is "0", and an embedded scheduler when $EMBEDDED_SCHEDULER is "1".

Tasks: ``films.enrich`` reports progress in steps gated by files (so a test decides when the
job moves on), ``films.add`` returns a sum, ``films.slow`` reports progress until cancelled,
``films.tick`` is scheduled every second (as ``every-second``), ``internal.purge_all_users`` is
a task no router lists.

Under /api a router that lets clients enqueue the films tasks with every option; under /secure
one as the router's docs advise: an ``X-User`` header required (the host's "authentication"),
only ``films.add``, the user recorded in each job's kwargs and each user seeing only their jobs,
no /worker/status.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException, Request

import cinejobs
from cinejobs.contrib.fastapi import CLIENT_OPTIONS, jobs_router, lifespan

jobs = cinejobs.App(os.environ["CINEJOBS_BROKER"])


@jobs.task(name="films.enrich", queue="web")
def enrich(title: str, steps: int, gate_dir: str) -> dict[str, object]:
    job = cinejobs.current_job()
    for step in range(steps):
        gate = Path(gate_dir) / f"{job.id}-{step}"
        while not gate.exists():
            time.sleep(0.01)
        job.progress((step + 1) / steps, step=f"step-{step + 1}", message=f"{title}: {step + 1}")
    return {"title": title, "steps": steps}


@jobs.task(name="films.add", queue="web")
def add(a: int, b: int, user: str | None = None) -> int:
    return a + b


@jobs.task(name="internal.purge_all_users", queue="web")
def purge_all_users() -> str:
    return "everyone is gone"


@jobs.task(name="films.slow", queue="web")
def slow(limit: float) -> str:
    job = cinejobs.current_job()
    start = time.monotonic()
    while time.monotonic() - start < limit:
        # Raises once a cancel was requested, so the job ends cancelled.
        job.progress((time.monotonic() - start) / limit, step="waiting")
        time.sleep(0.02)
    return "ran out"


@jobs.periodic(every="1s", name="every-second")
@jobs.task(name="films.tick", queue="web")
def tick() -> str:
    return "tick"


api = FastAPI(
    lifespan=lifespan(
        jobs,
        worker=os.environ.get("EMBEDDED_WORKER", "1") != "0",
        scheduler=os.environ.get("EMBEDDED_SCHEDULER", "0") == "1",
        concurrency=4,
        heartbeat=0.2,
    )
)
films = [t for t in jobs.tasks.values() if t.name.startswith("films.")]
api.include_router(jobs_router(jobs, tasks=films, client_options=CLIENT_OPTIONS), prefix="/api")


def current_user(x_user: str | None = Header(default=None)) -> str:
    if not x_user:
        raise HTTPException(401, "log in first")
    return x_user


def user_of(request: Request) -> str:
    return str(request.headers["x-user"])


api.include_router(
    jobs_router(
        jobs,
        tasks=[add],
        dependencies=[Depends(current_user)],
        server_kwargs=lambda request: {"user": user_of(request)},
        job_filter=lambda request, job: job["kwargs"].get("user") == user_of(request),
        worker_status=False,
    ),
    prefix="/secure",
)
