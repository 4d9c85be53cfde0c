"""The web service the FastAPI tests run under uvicorn: a jobs App on the broker in
$CINEJOBS_BROKER, its router mounted under /api, an embedded worker started by the lifespan
unless $EMBEDDED_WORKER is "0", and an embedded scheduler when $EMBEDDED_SCHEDULER is "1".

Tasks: ``films.enrich`` reports progress in steps gated by files (so a test decides when the
job moves on), ``films.add`` returns a sum, ``films.slow`` reports progress until cancelled,
``films.tick`` is scheduled every second (as ``every-second``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi import FastAPI

import cinejobs
from cinejobs.contrib.fastapi import jobs_router, lifespan

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
def add(a: int, b: int) -> int:
    return a + b


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
api.include_router(jobs_router(jobs), prefix="/api")
