"""The web service the FastAPI metrics test runs under uvicorn: an App on $CINEJOBS_BROKER with
an embedded worker (the lifespan's), its router mounted under /api with metrics=True, and under
/plain without (metrics are opt-in)."""

from __future__ import annotations

import os

from fastapi import FastAPI

import cinejobs
from cinejobs.contrib.fastapi import jobs_router, lifespan

jobs = cinejobs.App(os.environ["CINEJOBS_BROKER"])


@jobs.task(name="web.add", queue="web", max_attempts=1)
def add(a: int, b: int) -> int:
    return a + b


@jobs.task(name="web.fail", queue="web", max_attempts=1)
def fail() -> None:
    raise ValueError("no")


api = FastAPI(lifespan=lifespan(jobs, concurrency=2, heartbeat=0.2))
api.include_router(jobs_router(jobs, metrics=True), prefix="/api")
api.include_router(jobs_router(jobs), prefix="/plain")
