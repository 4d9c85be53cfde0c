"""FastAPI integration: a lifespan that runs an embedded worker (and, if asked, a scheduler)
with the web app, and a router that lets HTTP clients enqueue jobs, read and cancel them,
stream their progress, and see the workers' and schedules' state.

    import cinejobs
    from cinejobs.contrib.fastapi import jobs_router, lifespan
    from fastapi import FastAPI

    jobs = cinejobs.App("sqlite:///jobs.db")

    @jobs.task(queue="enrich")
    def enrich(title: str) -> dict: ...

    @jobs.periodic(cron="0 2 * * *", tz="Europe/Paris")
    def nightly() -> None: ...

    # worker=False, scheduler=False: both run as their own services
    api = FastAPI(lifespan=lifespan(jobs, concurrency=16, scheduler=True))
    api.include_router(jobs_router(jobs), prefix="/api")

Routes (relative to the router's prefix):

- ``POST /jobs/{task}``: body ``{"args": [...], "kwargs": {...}, "delay": s, "priority": n,
  "unique_key": "...", "queue": "..."}`` (all optional); 202 ``{"job_id", "state"}``; 409
  ``{"detail", "job_id"}`` naming the live job when the unique key is taken; 404 for a task
  the app does not know (clients cannot enqueue arbitrary names); 422 for arguments or options
  that are refused.
- ``GET /jobs/{id}``: state, progress ``{step, fraction, message}``, result or error.
- ``POST /jobs/{id}/cancel``: ``{"job_id", "state"}`` after the cancel.
- ``GET /jobs/{id}/events``: server-sent events, one ``progress`` event per change seen and a
  final ``done`` event with the whole job, then the stream ends.
- ``GET /worker/status``: the embedded worker (running, counters) and scheduler (running),
  every schedule's last and next tick as the broker records them (right wherever the
  schedulers run), and job counts per queue and state.
- ``GET /health``: 200 when the broker answers, 503 (naming what is wrong) when not.
- ``GET /metrics`` (``jobs_router(app, metrics=True)`` only): Prometheus text format 0.0.4,
  the embedded worker's counters and gauges and the queue depth (see cinejobs.metrics).

Blocking broker calls run in worker threads (``anyio.to_thread``), so the event loop never
waits on the broker.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from .._redact import redact
from ..app import App
from ..errors import (
    BrokerUnavailable,
    ConfigError,
    InvalidPayload,
    JobNotFound,
    UniqueConflict,
)
from ..handle import FINAL_STATES, JobHandle
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import render_metrics
from ..schedules import Scheduler, ScheduleStatus
from ..worker import Worker

__all__ = ["EnqueueRequest", "jobs_router", "lifespan"]

# The keys under FastAPI's app.state where the lifespan keeps its embedded worker and scheduler.
WORKER_STATE = "cinejobs_worker"
SCHEDULER_STATE = "cinejobs_scheduler"
# How long one wait for a job's change may block a thread before the stream looks at its
# client again (a disconnected client is noticed within this).
EVENT_WAIT_S = 1.0
# A comment line sent on a quiet stream, so proxies do not close it for idleness.
KEEPALIVE_S = 15.0


async def _in_thread(fn: Callable[[], object]) -> None:
    await anyio.to_thread.run_sync(fn)


def lifespan(
    app: App,
    *,
    worker: bool = True,
    scheduler: bool = False,
    queues: Iterable[str] | None = None,
    concurrency: int | None = None,
    scheduler_options: Mapping[str, Any] | None = None,
    **worker_options: Any,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that runs ``app``'s jobs inside the web process while it serves.

    ``worker=True`` (the default) starts an embedded worker when the web app starts and stops
    it gracefully (in-flight jobs finish within its grace, the rest go back to the queue) when
    the web app shuts down; options as for :meth:`cinejobs.App.worker`. ``scheduler=True``
    also runs a scheduler for the app's schedules (``@app.periodic``, ``app.schedule``) over
    the same span, stopped before the worker; options in ``scheduler_options``, as for
    :meth:`cinejobs.App.scheduler`. Every gunicorn/uvicorn process may run one: the broker
    enqueues each tick once. ``worker=False, scheduler=False`` starts nothing, for deployments
    whose workers and schedulers run as their own services; the router works either way."""

    @asynccontextmanager
    async def run(web: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as started:
            embedded: Worker | None = None
            # Built and started in threads: the first use of the app's broker connects.
            if worker:
                embedded = await anyio.to_thread.run_sync(
                    lambda: app.worker(queues, concurrency, **worker_options).start()
                )
                started.push_async_callback(_in_thread, embedded.stop)
            ticking: Scheduler | None = None
            if scheduler:
                ticking = await anyio.to_thread.run_sync(
                    lambda: app.scheduler(**dict(scheduler_options or {})).start()
                )
                # Exits unwind in reverse: the scheduler stops enqueueing before the worker
                # stops running what it enqueued.
                started.push_async_callback(_in_thread, ticking.stop)
            setattr(web.state, WORKER_STATE, embedded)
            setattr(web.state, SCHEDULER_STATE, ticking)
            try:
                yield
            finally:
                setattr(web.state, WORKER_STATE, None)
                setattr(web.state, SCHEDULER_STATE, None)

    return run


class EnqueueRequest(BaseModel):
    """The body of ``POST /jobs/{task}``; every field is optional."""

    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    delay: float | None = Field(default=None, description="seconds before the job may start")
    priority: int | None = None
    unique_key: str | None = None
    queue: str | None = None


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a job (a JobHandle.info() dict)."""
    return {
        "job_id": job["id"],
        "task": job["task"],
        "queue": job["queue"],
        "state": job["state"],
        "progress": job["progress"],
        "result": job["result"],
        "error": job["error"],
        "attempt": job["attempt"],
        "max_attempts": job["max_attempts"],
        "created_at": job["created_at"],
        "started_at": job["started_at"] or None,
        "finished_at": job["finished_at"] or None,
    }


def _epoch_ms(when: _dt.datetime | None) -> int | None:
    return None if when is None else round(when.timestamp() * 1000)


def schedule_view(status: ScheduleStatus) -> dict[str, Any]:
    """What the API shows of a schedule; ticks in epoch ms, as the jobs' times."""
    return {
        "name": status.name,
        "spec": status.spec,
        "tz": status.tz,
        "last_tick": _epoch_ms(status.last_tick),
        "next_tick": _epoch_ms(status.next_tick),
        "last_job_id": status.last_job_id,
        "outcome": status.outcome,
    }


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def jobs_router(
    app: App, *, allow_tasks: Iterable[str] | None = None, metrics: bool = False
) -> APIRouter:
    """The jobs API for ``app`` (see the module's docstring). ``allow_tasks`` limits which
    task names clients may enqueue (default: every task registered on ``app``). ``metrics=True``
    adds ``GET /metrics``: the lifespan's worker's Prometheus metrics, or without one the
    process's counters and the broker's queue depth (opt-in: a public API may not want them)."""
    router = APIRouter(tags=["cinejobs"])
    allowed = set(allow_tasks) if allow_tasks is not None else None

    def handle_of(job_id: str) -> JobHandle:
        try:
            return app.get_job(job_id)
        except JobNotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.post("/jobs/{task}", status_code=202)
    async def enqueue(
        task: str, request: Annotated[EnqueueRequest | None, Body()] = None
    ) -> JSONResponse:
        known = allowed if allowed is not None else set(app.tasks)
        if task not in known:
            raise HTTPException(404, f"unknown task {task!r}")
        body = request or EnqueueRequest()
        options = {
            k: v
            for k, v in {
                "delay": body.delay,
                "priority": body.priority,
                "unique_key": body.unique_key,
                "queue": body.queue,
            }.items()
            if v is not None
        }
        try:
            handle = await anyio.to_thread.run_sync(
                lambda: app.enqueue(task, body.args, body.kwargs, **options)
            )
        except UniqueConflict as exc:
            return JSONResponse({"detail": str(exc), "job_id": exc.existing_id}, status_code=409)
        except (TypeError, ConfigError, InvalidPayload) as exc:
            raise HTTPException(422, redact(str(exc))) from exc
        except BrokerUnavailable as exc:
            raise HTTPException(503, redact(str(exc))) from exc
        state = await anyio.to_thread.run_sync(handle.status)
        return JSONResponse({"job_id": handle.id, "state": state}, status_code=202)

    @router.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            return job_view(handle_of(job_id).info())

        return await anyio.to_thread.run_sync(read)

    @router.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            return {"job_id": job_id, "state": handle_of(job_id).cancel()}

        return await anyio.to_thread.run_sync(run)

    @router.get("/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        handle = await anyio.to_thread.run_sync(handle_of, job_id)

        async def stream() -> AsyncIterator[str]:
            seen: tuple[Any, ...] | None = None
            quiet_since = anyio.current_time()
            while True:
                job = await anyio.to_thread.run_sync(handle.info)
                now = (job["state"], json.dumps(job["progress"], sort_keys=True))
                if job["state"] in FINAL_STATES:
                    yield _sse("done", job_view(job))
                    return
                if now != seen:
                    seen = now
                    quiet_since = anyio.current_time()
                    yield _sse(
                        "progress",
                        {"job_id": job_id, "state": job["state"], "progress": job["progress"]},
                    )
                elif anyio.current_time() - quiet_since > KEEPALIVE_S:
                    quiet_since = anyio.current_time()
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                # Returns at the job's next change (at once on brokers that signal one) or
                # after EVENT_WAIT_S, whichever comes first.
                await anyio.to_thread.run_sync(app.broker.wait_for_update, job_id, EVENT_WAIT_S)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/worker/status")
    async def worker_status(request: Request) -> dict[str, Any]:
        embedded: Worker | None = getattr(request.app.state, WORKER_STATE, None)
        ticking: Scheduler | None = getattr(request.app.state, SCHEDULER_STATE, None)

        def read() -> tuple[list[tuple[str, str, int]], list[ScheduleStatus]]:
            # Ticks as the broker records them, not as this process's scheduler remembers
            # them: right when the schedulers run in other processes, and a next tick in the
            # past shows that none is running.
            return app.counts(), app.schedules(next_tick_from="broker")

        counts, schedules = await anyio.to_thread.run_sync(read)
        queues: dict[str, dict[str, int]] = {}
        for queue, state, n in counts:
            queues.setdefault(queue, {})[state] = n
        return {
            "worker": None
            if embedded is None
            else {
                "running": embedded.running,
                "queues": embedded.queues,
                "concurrency": embedded.concurrency,
                "stats": embedded.stats(),
            },
            "scheduler": None
            if ticking is None
            else {
                "running": ticking.running,
                "schedules": ticking.names,
                "last_error": ticking.last_error or None,
            },
            "schedules": [schedule_view(s) for s in schedules],
            "queues": queues,
        }

    if metrics:

        @router.get("/metrics", response_class=PlainTextResponse)
        async def prometheus_metrics(request: Request) -> Response:
            embedded: Worker | None = getattr(request.app.state, WORKER_STATE, None)
            # Reads the broker's counts: a round trip, so in a thread.
            text = await anyio.to_thread.run_sync(
                lambda: render_metrics(embedded, broker=app.broker)
            )
            return Response(text, media_type=METRICS_CONTENT_TYPE)

    @router.get("/health")
    async def health() -> JSONResponse:
        def ping() -> None:
            # One indexed lookup of an id no job has: proves the broker answers, costs nothing.
            app.broker.get("00000000-0000-0000-0000-000000000000")

        try:
            await anyio.to_thread.run_sync(ping)
        except (BrokerUnavailable, ConfigError) as exc:
            return JSONResponse(
                {"status": "unavailable", "detail": redact(str(exc))}, status_code=503
            )
        return JSONResponse({"status": "ok", "broker": app.broker.kind})

    return router
