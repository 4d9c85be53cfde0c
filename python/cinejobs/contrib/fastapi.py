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
    # Clients may enqueue `enrich` only, and only once current_user (your auth) lets them in.
    api.include_router(
        jobs_router(jobs, tasks=[enrich], dependencies=[Depends(current_user)]), prefix="/api"
    )

Routes (relative to the router's prefix):

- ``POST /jobs/{task}``: body ``{"args": [...], "kwargs": {...}, "delay": s}`` (all optional;
  ``priority``, ``unique_key`` and ``queue`` too where ``client_options`` allows them); 202
  ``{"job_id", "state"}``; 409 ``{"detail", "job_id"}`` naming the live job when the unique key
  is taken; 404 for a task not listed in ``tasks`` (none is, unless listed); 422 for arguments
  the task does not take or options the client may not set.
- ``GET /jobs/{id}``: state, progress ``{step, fraction, message}``, result or error.
- ``POST /jobs/{id}/cancel``: ``{"job_id", "state"}`` after the cancel.
- ``GET /jobs/{id}/events``: server-sent events, one ``progress`` event per change seen and a
  final ``done`` event with the whole job, then the stream ends.
- ``GET /worker/status`` (unless ``worker_status=False``): the embedded worker (running,
  counters) and scheduler (running), every schedule's last and next tick as the broker records
  them (right wherever the schedulers run), and job counts per queue and state.
- ``GET /health``: 200 when the broker answers, 503 (naming what is wrong) when not.
- ``GET /metrics`` (``jobs_router(app, metrics=True)`` only): Prometheus text format 0.0.4,
  the embedded worker's counters and gauges and the queue depth (see cinejobs.metrics).

Every route runs the router's ``dependencies`` first (the host app's authentication); reads,
cancels and event streams show only the jobs ``job_filter`` lets a request see (404 for the
others). Blocking broker calls run in worker threads (``anyio.to_thread``), so the event loop
never waits on the broker; a broker that cannot be reached gives 503 on every route.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from .._redact import redact
from ..app import App, Task
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

__all__ = ["CLIENT_OPTIONS", "DEFAULT_CLIENT_OPTIONS", "EnqueueRequest", "jobs_router", "lifespan"]

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


# The enqueue options a client may set unless the router allows more: when to run. Queue,
# priority and unique key are the server's to choose (a client could park work on a queue
# nobody consumes, jump the line, or hold the server's own unique keys).
DEFAULT_CLIENT_OPTIONS = frozenset({"delay"})
CLIENT_OPTIONS = frozenset({"delay", "priority", "unique_key", "queue"})


def jobs_router(
    app: App,
    *,
    tasks: Iterable[str | Task[..., Any]] = (),
    dependencies: Sequence[Any] | None = None,
    client_options: Iterable[str] = DEFAULT_CLIENT_OPTIONS,
    server_kwargs: Callable[[Request], Mapping[str, Any]] | None = None,
    job_filter: Callable[[Request, dict[str, Any]], bool] | None = None,
    worker_status: bool = True,
    metrics: bool = False,
    allow_tasks: Iterable[str] | None = None,
) -> APIRouter:
    """The jobs API for ``app`` (see the module's docstring), safe by default:

    - ``tasks``: the tasks (or names) clients may enqueue; none unless listed, so an internal
      task (``purge_all_users``) is never one POST away. ``allow_tasks`` is the old name.
    - ``dependencies``: FastAPI dependencies run before every route, e.g.
      ``[Depends(current_user)]``: the host app's authentication. Without it the routes are
      open to whoever reaches them.
    - ``client_options``: which of ``delay``, ``priority``, ``unique_key``, ``queue`` a client
      may set (default: ``delay``); the others give 422.
    - ``server_kwargs(request)``: keyword arguments the server sets on every job it enqueues,
      over what the client sent (e.g. the caller's user id), so a job records its owner.
    - ``job_filter(request, job)``: whether this request may see or cancel ``job`` (its
      ``info()`` dict); a job it may not answers 404, as one that does not exist.
    - ``worker_status=False`` leaves ``/worker/status`` out; ``metrics=True`` adds ``/metrics``.

    A broker that cannot be reached gives 503 on every route."""
    named = list(tasks) + list(allow_tasks or ())
    allowed = {t if isinstance(t, str) else t.name for t in named}
    options_allowed = set(client_options)
    if not options_allowed <= CLIENT_OPTIONS:
        raise ConfigError(
            f"client_options may name {', '.join(sorted(CLIENT_OPTIONS))}; got "
            f"{', '.join(sorted(options_allowed - CLIENT_OPTIONS))}"
        )
    router = APIRouter(tags=["cinejobs"], dependencies=list(dependencies or ()))

    async def in_thread(fn: Callable[[], Any]) -> Any:
        """Run a blocking broker call in a worker thread; an unreachable broker is a 503."""
        try:
            return await anyio.to_thread.run_sync(fn)
        except BrokerUnavailable as exc:
            raise HTTPException(503, redact(str(exc))) from exc

    def visible(request: Request, job_id: str) -> tuple[JobHandle, dict[str, Any]]:
        try:
            handle = app.get_job(job_id)
            job = handle.info()
        except JobNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        if job_filter is not None and not job_filter(request, job):
            raise HTTPException(404, f"no job with id {job_id}")
        return handle, job

    @router.post("/jobs/{task}", status_code=202)
    async def enqueue(
        task: str, http: Request, request: Annotated[EnqueueRequest | None, Body()] = None
    ) -> JSONResponse:
        if task not in allowed:
            raise HTTPException(404, f"unknown task {task!r}")
        body = request or EnqueueRequest()
        given = {
            k: v
            for k, v in {
                "delay": body.delay,
                "priority": body.priority,
                "unique_key": body.unique_key,
                "queue": body.queue,
            }.items()
            if v is not None
        }
        refused = sorted(set(given) - options_allowed)
        if refused:
            raise HTTPException(
                422, f"clients may not set {', '.join(refused)} on this API (the server decides)"
            )
        kwargs = dict(body.kwargs)
        if server_kwargs is not None:
            kwargs.update(server_kwargs(http))
        try:
            handle = await in_thread(lambda: app.enqueue(task, body.args, kwargs, **given))
        except UniqueConflict as exc:
            return JSONResponse({"detail": str(exc), "job_id": exc.existing_id}, status_code=409)
        except (TypeError, ConfigError, InvalidPayload) as exc:
            raise HTTPException(422, redact(str(exc))) from exc
        state = await in_thread(handle.status)
        return JSONResponse({"job_id": handle.id, "state": state}, status_code=202)

    @router.get("/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> dict[str, Any]:
        return job_view((await in_thread(lambda: visible(request, job_id)))[1])

    @router.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: str, request: Request) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            handle, _ = visible(request, job_id)
            return {"job_id": job_id, "state": handle.cancel()}

        return dict(await in_thread(run))

    @router.get("/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        handle = (await in_thread(lambda: visible(request, job_id)))[0]

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

    if worker_status:

        @router.get("/worker/status")
        async def read_worker_status(request: Request) -> dict[str, Any]:
            embedded: Worker | None = getattr(request.app.state, WORKER_STATE, None)
            ticking: Scheduler | None = getattr(request.app.state, SCHEDULER_STATE, None)

            def read() -> tuple[list[tuple[str, str, int]], list[ScheduleStatus]]:
                # Ticks as the broker records them, not as this process's scheduler remembers
                # them: right when the schedulers run in other processes, and a next tick in the
                # past shows that none is running.
                return app.counts(), app.schedules(next_tick_from="broker")

            counts, schedules = await in_thread(read)
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
            text = await in_thread(lambda: render_metrics(embedded, broker=app.broker))
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
