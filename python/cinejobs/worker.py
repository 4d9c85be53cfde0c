"""The embedded worker: a C++ worker running this app's Python tasks.

Every decision (what to reserve, retries, leases, timeouts, stopping) is the C++ worker's;
this module only turns each task into a *runner* the C++ handler threads call with the GIL
held: decode the arguments, make ``current_job()`` work, call the user's function, encode the
result or the error.

``async def`` tasks run on one asyncio event loop the worker owns (a thread started with the
worker and stopped with it). The handler thread submits the coroutine and waits for it with the
GIL released; while waiting it watches the job's cancel token and cancels the coroutine once
the job is cancelled, times out or the worker shuts down past its grace period.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _core, batch
from .context import CurrentJob, _current
from .errors import Retry
from .joblog import JobLog

if TYPE_CHECKING:
    from .app import Task

__all__ = ["Worker"]

# Built once: json.dumps() with options builds a new encoder per call, a cost per job.
_RESULT_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
# How often a handler thread waiting for a coroutine looks at the job's cancel token.
_CANCEL_CHECK_INTERVAL = 0.05


def _error(exc: BaseException) -> tuple[str, str, str]:
    return (type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))


def _failure(
    task: Task[..., Any], exc: BaseException, args: Any, kwargs: Any
) -> _core.RunnerResult:
    """The runner's answer for a task that raised: a retry at the time a Retry asks for, a
    failure for good when the task does not retry that exception, else the worker's choice."""
    kind, message, trace = _error(exc)
    if isinstance(exc, Retry):
        retry_at = None if exc.delay is None else round((time.time() + exc.delay) * 1000)
        return (kind, message, trace, retry_at, "retry")
    if not task.retries(exc, args, kwargs):
        return (kind, message, trace, None, "fail")
    return (kind, message, trace)


class _EventLoopThread:
    """One asyncio event loop on its own (non-daemon) thread, for the worker's async tasks."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=False)
        self._closed = False

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
            # Cancel what is left (coroutines of jobs past the grace period) and let them unwind.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def run(self, coro: Coroutine[Any, Any, Any], job: CurrentJob) -> Any:
        """Run ``coro`` on the loop with ``current_job()`` set to ``job`` and return its value.

        Called on a handler thread; the waits release the GIL. Once the job's cancel token is
        set, the coroutine's task is cancelled (CancelledError at its next await); when it has
        unwound, JobCancelled or JobTimeout is raised here. Like a sync handler, a coroutine
        that swallows the cancellation keeps its job running until it returns.
        """
        tasks: list[asyncio.Task[Any]] = []

        async def with_job() -> Any:
            _current.set(job)  # the task runs in its own copy of the context
            task = asyncio.current_task()
            if task is not None:
                tasks.append(task)
            return await coro

        def cancel() -> None:  # on the loop's thread
            for task in tasks:
                task.cancel()
            if not tasks:
                future.cancel()  # not started yet: it never will

        if self._closed:
            coro.close()
            raise RuntimeError("the worker's event loop has stopped")
        future = asyncio.run_coroutine_threadsafe(with_job(), self._loop)
        cancel_sent = False
        while True:
            try:
                return future.result(timeout=_CANCEL_CHECK_INTERVAL)
            except concurrent.futures.CancelledError:
                job.raise_if_cancelled()
                raise
            except TimeoutError:
                if future.done():
                    raise  # the coroutine's own TimeoutError
                if job.cancel_requested and not cancel_sent:
                    cancel_sent = True
                    self._loop.call_soon_threadsafe(cancel)

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()


def make_runner(
    task: Task[..., Any], loop: Callable[[], _EventLoopThread]
) -> Callable[[_core.JobContext], _core.RunnerResult]:
    """Build the callable the C++ worker calls (GIL held) for each job of ``task``."""
    fn = task.fn
    name = task.name

    def runner(ctx: _core.JobContext) -> _core.RunnerResult:
        job = CurrentJob(ctx)
        token = _current.set(job)
        args: Any = None
        kwargs: Any = None
        try:
            raw_args, raw_kwargs = ctx.args, ctx.kwargs
            args = () if raw_args == "[]" else json.loads(raw_args)
            kwargs = {} if raw_kwargs == "{}" else json.loads(raw_kwargs)
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = loop().run(_as_coroutine(result), job)
        except BaseException as exc:  # the handler's failure is the job's error, whatever it is
            return _failure(task, exc, args, kwargs)
        finally:
            _current.reset(token)
        try:
            return "null" if result is None else _RESULT_ENCODER.encode(result)
        except (TypeError, ValueError) as exc:
            return (
                "TypeError",
                f"the result of task {name!r} cannot be stored as JSON "
                f"({type(result).__name__}): {exc}",
                "",
            )

    runner.__qualname__ = runner.__name__ = f"run[{name}]"
    return runner


def make_rate_limit_key(task: Task[..., Any]) -> Callable[[str, str], str] | None:
    """Build the callable the C++ worker calls (GIL held) for the rate limit key of a job of
    ``task``: the task's rate_limit_key applied to the job's arguments ("" for None)."""
    key_fn = task.rate_limit_key
    if key_fn is None:
        return None
    name = task.name

    def rate_limit_key(raw_args: str, raw_kwargs: str) -> str:
        args = () if raw_args == "[]" else json.loads(raw_args)
        kwargs = {} if raw_kwargs == "{}" else json.loads(raw_kwargs)
        key = key_fn(*args, **kwargs)
        if key is None:
            return ""
        if not isinstance(key, str):
            raise TypeError(
                f"rate_limit_key of task {name!r} must return a str or None, got "
                f"{type(key).__qualname__}"
            )
        return key

    return rate_limit_key


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _as_coroutine(awaitable: Any) -> Coroutine[Any, Any, Any]:
    if inspect.iscoroutine(awaitable):
        return awaitable
    return _await(awaitable)


class Worker:
    """An embedded worker for one app: build it with ``App.worker(...)``.

    Use it as a context manager (start on enter, graceful stop on exit), or call
    :meth:`start` and :meth:`stop`. Stopping waits up to ``grace`` seconds for running jobs,
    then returns the rest to their queue.
    """

    def __init__(
        self,
        broker: _core.Broker,
        tasks: Iterable[Task[..., Any]],
        *,
        queues: Iterable[str],
        concurrency: int | None = None,
        queue_concurrency: Mapping[str, int] | None = None,
        max_batch: int | None = None,
        lease: float | None = None,
        heartbeat: float | None = None,
        poll_interval: float | None = None,
        grace: float | None = None,
        maintenance_interval: float | None = None,
        worker_id: str | None = None,
        processes: int | None = None,
        child_command: Sequence[str] | None = None,
        hard_timeout: float | None = None,
        kill_grace: float | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        tmdb: Mapping[str, str] | None = None,
    ) -> None:
        self.tasks = list(tasks)
        # What the caller gave; the core fills in every default (cpp/include/cinejobs/worker.hpp)
        # and validates, so no default is written twice.
        options = _core.WorkerOptions(
            queues=list(queues),
            concurrency=concurrency,
            queue_concurrency=dict(queue_concurrency) if queue_concurrency else None,
            max_batch=max_batch,
            lease=lease,
            heartbeat=heartbeat,
            poll_interval=poll_interval,
            grace=grace,
            maintenance_interval=maintenance_interval,
            worker_id=worker_id,
            processes=processes,
            child_command=list(child_command) if child_command is not None else None,
            hard_timeout=hard_timeout,
            kill_grace=kill_grace,
            max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child,
        )
        self._core = _core.Worker(broker, options)
        self.options = self._core.options
        self.queues = list(self.options.queues)
        self.concurrency = self.options.concurrency
        self.processes = self.options.processes
        self.grace = self.options.grace
        # Counted in C++ on the worker's threads: costs a lookup and increments per event.
        self._broker = broker
        self._metrics = _core.WorkerMetrics()
        self._core.add_observer(self._metrics)
        self._loop: _EventLoopThread | None = None
        self._loop_lock = threading.Lock()
        self._stop_report: dict[str, Any] | None = None
        self._job_log = JobLog(self._core)  # a line per job start and end, when logging is on
        self._core.register_builtins()
        # The native TMDB pipeline (tmdb.enrich, tmdb.sync): settings from the environment,
        # overridden by `tmdb` (rate, film_store, cache, rate_limit_store, sync_url). Nothing is
        # opened until a tmdb job arrives. Native handlers run in this process in either mode.
        self._core.register_tmdb(**dict(tmdb or {}))
        for task in self.tasks:
            # A task's limit lives in the broker's store under "task:<name>", so every worker on
            # the broker shares it.
            limiter = (
                _core.RateLimiter(
                    broker.url, f"task:{task.name}", task.rate_limit, task.rate_limit_burst
                )
                if task.rate_limit is not None
                else None
            )
            if self.processes > 0:
                # Process mode: the child processes run the function; this process keeps the
                # broker, the retries, the rate limit and the hard time limit.
                self._core.register_child_task(
                    task.name,
                    retry_backoff=task.retry_backoff,
                    retry_backoff_max=task.retry_backoff_max,
                    rate_limiter=limiter,
                    rate_limit_key=make_rate_limit_key(task),
                    hard_timeout=task.hard_timeout or 0.0,
                )
                continue
            self._core.register(
                task.name,
                make_runner(task, self._event_loop),
                retry_backoff=task.retry_backoff,
                retry_backoff_max=task.retry_backoff_max,
                rate_limiter=limiter,
                rate_limit_key=make_rate_limit_key(task),
                hard_timeout=task.hard_timeout or 0.0,
            )

    def register(self, name: str, runner: Callable[[_core.JobContext], _core.RunnerResult]) -> None:
        """Run jobs of task ``name`` with ``runner`` (called with the GIL held; returns the
        result as JSON text or an error tuple). Adapters for other task frameworks (the Celery
        drop-in worker) use it; must be called before :meth:`start`."""
        self._core.register(name, runner)

    def _event_loop(self) -> _EventLoopThread:
        with self._loop_lock:
            if self._loop is None:
                # Only reached by a sync function that returned an awaitable; async def tasks
                # get their loop when the worker starts.
                self._loop = _EventLoopThread("cinejobs-asyncio")
                self._loop.start()
            return self._loop

    @property
    def task_names(self) -> list[str]:
        """The names of the app's tasks this worker runs (the builtins come on top)."""
        return [t.name for t in self.tasks]

    def start(self) -> Worker:
        """Start reserving and running jobs. Calling it again does nothing. In process mode the
        child processes are started first; ConfigError when one cannot start (its output says
        why, e.g. the app failed to import)."""
        if self.processes == 0 and any(t.is_async for t in self.tasks):
            self._event_loop()
        self._job_log.start()  # before the core worker: its observers are fixed once it runs
        try:
            self._core.start()
        except BaseException:
            self._job_log.stop()
            raise
        batch._lifecycle.worker_started(self)
        return self

    def stop(self, grace: float | None = None) -> dict[str, Any]:
        """Stop gracefully and return {"finished", "returned", "clean"}: stop reserving, wait
        up to ``grace`` seconds (the worker's own when None) for running jobs, return the rest
        to their queue. Safe to call twice; the second call returns the first report."""
        if self._stop_report is None:
            # The stop waits for handler threads (and in process mode, child processes): without
            # the GIL, so that Python jobs can finish meanwhile.
            report = self._core.stop(-1.0 if grace is None else max(0.0, grace))
            self._stop_report = dict(report)
            self._job_log.stop()  # the last ends are in its queue now
            # Batchers opened while the worker ran hold its jobs' output: write it out now.
            batch._lifecycle.worker_stopped(self)
            if self._loop is not None:
                # Coroutines of jobs past the grace period are cancelled as the loop stops; their
                # handler threads see it and return (their jobs are already back in the queue).
                self._loop.stop()
        return self._stop_report

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._core.running

    def stats(self) -> dict[str, Any]:
        """Counters: reserved, succeeded, failed (final), retried, cancelled, released, lost,
        snoozed (held back by a rate limit), running (jobs held now), slots (the most held at
        once), children (child processes alive, process mode) and child_restarts ({cause:
        count}: crashed, hard_timeout, max_jobs, max_memory)."""
        return dict(self._core.stats())

    def metrics_text(self) -> str:
        """This worker's Prometheus metrics (text format 0.0.4): job counters, running jobs and
        free slots, the process-wide counters and the broker's queue depth, read now."""
        return _core.render_metrics(self._core, self._metrics, self._broker)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
