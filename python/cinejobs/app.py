"""App and Task: the user's side of cinejobs.

An App names one broker and the tasks that run on it. ``@app.task`` turns a function into a
Task, which still runs when called directly and also enqueues with ``.delay()`` /
``.enqueue()``. Arguments cross to the broker as JSON (never pickle): anything JSON cannot
carry is refused with TypeError at enqueue, before anything is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import inspect
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from . import _core
from ._redact import redact
from .errors import BrokerUnavailable, ConfigError, UniqueConflict, UnknownTask
from .handle import JobHandle, decode_job
from .inline import run_inline
from .schedules import (
    Scheduler,
    ScheduleSpec,
    ScheduleStatus,
    grace_seconds,
    make_timing,
    schedule_statuses,
)
from .worker import Worker

_log = logging.getLogger("cinejobs")

__all__ = ["DEFAULT_BROKER_URL", "App", "Task", "default_broker_url", "run_until_signalled"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_BROKER_URL = "sqlite:///cinejobs.db"
BUILTIN_TASKS = ("cinejobs.noop", "cinejobs.sleep", "cinejobs.prune")
_JSON_SEPARATORS = (",", ":")
# The options every enqueue accepts, besides args and kwargs.
_ENQUEUE_OPTIONS = frozenset(
    {"delay", "run_at", "priority", "unique_key", "queue", "max_attempts", "timeout"}
)

# The fields of one job as _core.Broker.enqueue and enqueue_many take them.
_Fields = tuple[str, str, str, str, int, int, int, str | None, int]


def default_broker_url() -> str:
    """``$CINEJOBS_BROKER`` when set and not empty, else ``sqlite:///cinejobs.db``."""
    return os.environ.get("CINEJOBS_BROKER") or DEFAULT_BROKER_URL


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _NotJson(TypeError):
    """Raised by the encoder's ``default`` hook for a value JSON cannot carry."""

    def __init__(self, value: object) -> None:
        super().__init__(type(value).__qualname__)
        self.value = value


def _refuse(value: object) -> object:
    raise _NotJson(value)


# One encoder for every enqueue: json.dumps() with options builds a new encoder per call, which
# cost more than the rest of an enqueue.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=_JSON_SEPARATORS, default=_refuse)


def encode_json(value: list[Any] | dict[str, Any], what: str, task: str) -> str:
    """Encode ``value`` (a task's args, kwargs) as compact JSON, or raise TypeError naming the
    task and the type of the first value JSON cannot carry."""
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    try:
        return _ENCODER.encode(value)
    except _NotJson as exc:
        raise TypeError(
            f"{what} of task {task!r} cannot be sent as JSON: a value of type "
            f"{type(exc.value).__qualname__} ({_describe(exc.value)}); pass JSON types (str, "
            "int, float, bool, None, list, dict), for example an id or a path instead of an "
            "object"
        ) from None
    except ValueError as exc:  # NaN or infinity, a circular reference
        raise TypeError(
            f"{what} of task {task!r} cannot be sent as JSON: {exc} (JSON has no NaN or "
            "infinity, and no circular structures)"
        ) from None
    except TypeError as exc:
        # e.g. "keys must be str, int, float, bool or None, not tuple"
        raise TypeError(f"{what} of task {task!r} cannot be sent as JSON: {exc}") from None


def _epoch_ms(when: _dt.datetime | float | int) -> int:
    if isinstance(when, _dt.datetime):
        seconds = when.timestamp()  # a naive datetime is local time, as datetime does
    elif isinstance(when, (int, float)) and not isinstance(when, bool):
        seconds = float(when)
    else:
        raise TypeError(
            f"run_at must be a datetime or epoch seconds, got {type(when).__qualname__}"
        )
    if not math.isfinite(seconds):
        raise ConfigError(f"run_at must be a finite time, got {when!r}")
    return max(0, round(seconds * 1000))


def _check_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__qualname__}")
    return value


def _timeout_ms(timeout: float | None, what: str) -> int:
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be seconds as a number, got {type(timeout).__qualname__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ConfigError(f"{what} must be a positive number of seconds, got {timeout!r}")
    return max(1, round(timeout * 1000))


def _exception_classes(
    classes: Iterable[type[BaseException]], what: str
) -> tuple[type[BaseException], ...]:
    # One class alone is accepted too, as `except` takes it.
    out: tuple[Any, ...] = (classes,) if isinstance(classes, type) else tuple(classes)
    for cls in out:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ConfigError(f"{what} must be exception classes, got {cls!r}")
    return cast(tuple[type[BaseException], ...], out)


class Task(Generic[P, R]):
    """A function registered as a task of an App.

    Calling the task runs the function directly, in this process (no broker involved).
    ``delay(*args, **kwargs)`` enqueues it with the task's defaults; ``enqueue(...)`` also
    takes per-job options. Both return a :class:`JobHandle`.
    """

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str,
        max_attempts: int,
        timeout: float | None,
        priority: int,
        retry_backoff: float,
        retry_backoff_max: float,
        rate_limit: str | None,
        unique: Callable[..., str | None] | None,
        rate_limit_burst: int = 1,
        rate_limit_key: Callable[..., str | None] | None = None,
        hard_timeout: float | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        dont_retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.hard_timeout = hard_timeout
        self.priority = priority
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.rate_limit = rate_limit
        self.rate_limit_burst = rate_limit_burst
        self.rate_limit_key = rate_limit_key
        self.unique = unique
        self.retry_on = retry_on
        self.dont_retry_on = dont_retry_on
        self.is_async = inspect.iscoroutinefunction(fn)
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin or C function without one
            self._signature = None
        functools.update_wrapper(self, fn)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError, naming the task and its signature, when the function cannot be
        called with ``args`` and ``kwargs``: at enqueue, not as three failed attempts."""
        if self._signature is None:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            plain = self._signature.replace(
                parameters=[
                    p.replace(annotation=inspect.Parameter.empty)
                    for p in self._signature.parameters.values()
                ],
                return_annotation=inspect.Signature.empty,
            )
            raise TypeError(
                f"task {self.name!r} cannot be called with these arguments: {exc} "
                f"(it takes {self.fn.__name__}{plain})"
            ) from None

    def retries(self, exc: BaseException, args: Any, kwargs: Any) -> bool:
        """Whether a failure with ``exc`` is worth another attempt: not when it is one of
        ``dont_retry_on``, not when ``retry_on`` is set and it is none of those, and not for a
        TypeError raised because the arguments do not fit the function (``args`` None: they
        could not even be decoded)."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        if self.retry_on is not None and not isinstance(exc, self.retry_on):
            return False
        if isinstance(exc, TypeError) and args is not None and self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError:
                return False
        return True

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, like a plain call (``current_job()`` is not set)."""
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Enqueue ``task(*args, **kwargs)`` with the task's defaults; return its handle."""
        return self.enqueue(args, kwargs)

    def enqueue(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        delay: float | None = None,
        run_at: _dt.datetime | float | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> JobHandle:
        """Enqueue one job of this task.

        ``delay`` (seconds) or ``run_at`` (a datetime or epoch seconds) schedule it for later;
        ``priority`` (higher first), ``queue``, ``max_attempts`` and ``timeout`` (seconds)
        override the task's defaults; ``unique_key`` (or the task's ``unique`` callable) makes
        the enqueue fail with :class:`UniqueConflict` while a live job holds the same key.
        Raises TypeError for arguments JSON cannot carry, InvalidPayload for a payload over
        the broker's limit.
        """
        fields = self.app._job_fields(
            self.name,
            self,
            args,
            kwargs,
            delay=delay,
            run_at=run_at,
            priority=priority,
            unique_key=unique_key,
            queue=queue,
            max_attempts=max_attempts,
            timeout=timeout,
        )
        return self.app._enqueue_fields(fields)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue!r}>"


class App:
    """One broker and the tasks that run on it.

    ``broker_url``: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` (query
    parameters: ``result_ttl_s``, ``max_payload_bytes``, ``busy_timeout_ms``, ``synchronous``);
    default ``$CINEJOBS_BROKER``, else ``sqlite:///cinejobs.db``. The broker is opened on first
    use (or by :meth:`connect`), so importing a module that defines an App touches nothing;
    a malformed URL raises ConfigError and a store that cannot be opened BrokerUnavailable.

    ``strict``: when True, ``app.enqueue(name)`` refuses names that are not tasks of this app
    (nor builtins) with UnknownTask. By default unknown names are enqueued, since a worker
    elsewhere may know them; a worker that does not fails such a job with UnknownTask.

    ``inline_fallback``: when True, a job of one of this app's tasks that the broker cannot
    take (BrokerUnavailable) runs at once in the calling thread instead, and the enqueue
    returns an :class:`~cinejobs.inline.InlineHandle` with its outcome; every such run is
    logged at ERROR level on the ``cinejobs`` logger. Jobs meant for later (``delay``,
    ``run_at``) and batches (``enqueue_many``) still raise. Off by default: an inline job is
    not stored, not retried, and holds up its caller.
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        max_payload_bytes: int = 1 << 20,
        result_ttl: float = 86400.0,
        strict: bool = False,
        inline_fallback: bool = False,
    ) -> None:
        self._broker_url = broker_url if broker_url is not None else default_broker_url()
        self.inline_fallback = inline_fallback
        if inline_fallback:
            _log.warning(
                "cinejobs: inline_fallback is on for broker %s: when it is unavailable, jobs "
                "of this app's tasks run inside the caller's process, unstored and unretried",
                redact(self._broker_url),
            )
        self.max_payload_bytes = max_payload_bytes
        self.result_ttl = result_ttl
        self.strict = strict
        self._broker: _core.Broker | None = None
        # How child processes of process mode import this app ("module:attr"); set by the CLI's
        # --app, else found from the module-level name the app is bound to (cinejobs._child).
        self._import_spec: str | None = None
        self._lock = threading.Lock()
        self._tasks: dict[str, Task[..., Any]] = {}
        self._schedules: dict[str, ScheduleSpec] = {}

    # ---- broker ----

    @property
    def broker_url(self) -> str:
        """The URL of the broker this app uses."""
        return self._broker_url

    @property
    def broker(self) -> _core.Broker:
        """The broker, opened on first use."""
        broker = self._broker
        if broker is None:
            with self._lock:
                if self._broker is None:
                    self._broker = _core.Broker(
                        self._broker_url,
                        max_payload_bytes=self.max_payload_bytes,
                        result_ttl=self.result_ttl,
                    )
                broker = self._broker
        return broker

    def connect(self) -> App:
        """Open the broker now (it is otherwise opened on first use). Raises ConfigError for a
        malformed URL, BrokerUnavailable when the store cannot be opened."""
        _ = self.broker
        return self

    def use_broker(self, broker_url: str) -> None:
        """Point the app at another broker URL (the CLI's ``--broker``). Only before the broker
        was opened; raises ConfigError after."""
        with self._lock:
            if self._broker is not None and broker_url != self._broker_url:
                raise ConfigError(
                    f"the app's broker {redact(self._broker_url)} is already open; set the URL "
                    "before the app is used"
                )
            self._broker_url = broker_url

    def close(self) -> None:
        """Drop this app's reference to the broker; the next use opens it again. Workers still
        running keep theirs."""
        with self._lock:
            self._broker = None

    # ---- tasks ----

    @property
    def tasks(self) -> dict[str, Task[..., Any]]:
        """The app's tasks by name (a copy)."""
        return dict(self._tasks)

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 3,
        timeout: float | None = None,
        hard_timeout: float | None = None,
        priority: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 600.0,
        rate_limit: str | None = None,
        rate_limit_burst: int = 1,
        rate_limit_key: Callable[..., str | None] | None = None,
        unique: Callable[..., str | None] | None = None,
        retry_on: Iterable[type[BaseException]] | None = None,
        dont_retry_on: Iterable[type[BaseException]] = (),
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 3,
        timeout: float | None = None,
        hard_timeout: float | None = None,
        priority: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 600.0,
        rate_limit: str | None = None,
        rate_limit_burst: int = 1,
        rate_limit_key: Callable[..., str | None] | None = None,
        unique: Callable[..., str | None] | None = None,
        retry_on: Iterable[type[BaseException]] | None = None,
        dont_retry_on: Iterable[type[BaseException]] = (),
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function (sync or ``async def``) as a task; usable bare (``@app.task``)
        or with options (``@app.task(queue="enrich", max_attempts=5)``).

        ``name`` defaults to ``module.qualname``; workers find the function by it, so keep it
        stable (and note that a script run as ``__main__`` names its tasks ``__main__.*``).
        ``timeout`` is a soft run-time limit in seconds (the job's ``cancel_requested`` turns
        true and ``progress()`` raises JobTimeout); ``hard_timeout`` a hard one, enforced in
        process mode (``cinejobs worker --processes N``) by killing the child process that runs
        the job past it, and refused by a worker in thread mode; ``retry_backoff`` the first retry
        delay in seconds, doubled per attempt up to ``retry_backoff_max``, with jitter;
        ``unique`` a callable taking the task's arguments and returning the job's unique key
        (or None for no key).

        Which failures are retried: by default every exception but a TypeError from calling
        the function with arguments it does not take. ``dont_retry_on`` (exception classes)
        fails the job at once for those; ``retry_on`` retries only those. Inside the task,
        ``raise cinejobs.Retry(delay=30)`` retries after 30 s (or after the backoff without a
        delay). Enqueue checks the arguments against the function's signature and raises
        TypeError at the call site.

        ``rate_limit`` ("20/s", "40/10s", "100/m", "5/h") limits how often the task starts,
        across every worker on the broker, with bursts of up to ``rate_limit_burst``. A job
        held back by its limit goes back to ``scheduled`` until a unit is free (plus jitter),
        without counting an attempt or holding a worker slot. ``rate_limit_key``, a callable
        taking the task's arguments, gives each key (a user, an API token) its own limit; None
        from it means the task's shared limit.
        """

        def register(f: Callable[P, R]) -> Task[P, R]:
            return self._register(
                f,
                name=name,
                queue=queue,
                max_attempts=max_attempts,
                timeout=timeout,
                hard_timeout=hard_timeout,
                priority=priority,
                retry_backoff=retry_backoff,
                retry_backoff_max=retry_backoff_max,
                rate_limit=rate_limit,
                rate_limit_burst=rate_limit_burst,
                rate_limit_key=rate_limit_key,
                unique=unique,
                retry_on=retry_on,
                dont_retry_on=dont_retry_on,
            )

        if fn is None:
            return register
        return register(fn)

    def _register(
        self,
        fn: Callable[P, R],
        *,
        name: str | None,
        queue: str,
        max_attempts: int,
        timeout: float | None,
        priority: int,
        retry_backoff: float,
        retry_backoff_max: float,
        rate_limit: str | None,
        rate_limit_burst: int,
        rate_limit_key: Callable[..., str | None] | None,
        unique: Callable[..., str | None] | None,
        hard_timeout: float | None = None,
        retry_on: Iterable[type[BaseException]] | None = None,
        dont_retry_on: Iterable[type[BaseException]] = (),
    ) -> Task[P, R]:
        if not callable(fn):
            raise TypeError(f"@app.task decorates a function, got {type(fn).__qualname__}")
        task_name = name if name is not None else f"{fn.__module__}.{fn.__qualname__}"
        if not isinstance(task_name, str) or not task_name:
            raise ConfigError("a task name must be a non-empty string")
        where = f"task {task_name!r}"
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"{where}: queue must be a non-empty string")
        if _check_int(max_attempts, f"{where}: max_attempts") < 1:
            raise ConfigError(f"{where}: max_attempts must be at least 1, got {max_attempts}")
        _timeout_ms(timeout, f"{where}: timeout")
        _timeout_ms(hard_timeout, f"{where}: hard_timeout")
        _check_int(priority, f"{where}: priority")
        for label, value in (
            ("retry_backoff", retry_backoff),
            ("retry_backoff_max", retry_backoff_max),
        ):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where}: {label} must be seconds >= 0, got {value!r}")
        if rate_limit is not None:
            if not isinstance(rate_limit, str):
                raise ConfigError(
                    f"{where}: rate_limit must be a rate like '20/s' or '40/10s', got "
                    f"{type(rate_limit).__qualname__}"
                )
            try:
                rate_limit = _core.parse_rate(rate_limit)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if _check_int(rate_limit_burst, f"{where}: rate_limit_burst") < 1:
            raise ConfigError(
                f"{where}: rate_limit_burst must be at least 1, got {rate_limit_burst}"
            )
        if rate_limit_key is not None:
            if not callable(rate_limit_key):
                raise ConfigError(
                    f"{where}: rate_limit_key must be a callable taking the task's arguments "
                    f"and returning the limit's key, got {type(rate_limit_key).__qualname__}"
                )
            if rate_limit is None:
                raise ConfigError(f"{where}: rate_limit_key needs a rate_limit to split")
        if unique is not None and not callable(unique):
            raise ConfigError(
                f"{where}: unique must be a callable taking the task's arguments and returning "
                f"the unique key, got {type(unique).__qualname__}"
            )
        retry_on_tuple = (
            None if retry_on is None else _exception_classes(retry_on, f"{where}: retry_on")
        )
        dont_retry_on_tuple = _exception_classes(dont_retry_on, f"{where}: dont_retry_on")
        existing = self._tasks.get(task_name)
        if existing is not None and (
            getattr(existing.fn, "__module__", None),
            getattr(existing.fn, "__qualname__", None),
        ) != (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)):
            raise ConfigError(
                f"two functions are registered as task {task_name!r}: "
                f"{existing.fn.__module__}.{existing.fn.__qualname__} and "
                f"{fn.__module__}.{fn.__qualname__}; give one of them another name="
            )
        task = Task(
            self,
            fn,
            name=task_name,
            queue=queue,
            max_attempts=max_attempts,
            timeout=timeout,
            hard_timeout=hard_timeout,
            retry_on=retry_on_tuple,
            dont_retry_on=dont_retry_on_tuple,
            priority=priority,
            retry_backoff=float(retry_backoff),
            retry_backoff_max=float(retry_backoff_max),
            rate_limit=rate_limit,
            rate_limit_burst=rate_limit_burst,
            rate_limit_key=rate_limit_key,
            unique=unique,
        )
        self._tasks[task_name] = task
        return task

    # ---- enqueue ----

    def _lookup(self, task: str | Task[..., Any]) -> tuple[str, Task[..., Any] | None]:
        if isinstance(task, Task):
            return task.name, task
        if not isinstance(task, str) or not task:
            raise TypeError(f"a task name must be a non-empty string, got {task!r}")
        known = self._tasks.get(task)
        if known is None and self.strict and task not in BUILTIN_TASKS:
            raise UnknownTask(
                f"no task named {task!r} in this app (strict=True); known tasks: "
                + (", ".join(sorted(self._tasks)) or "none")
            )
        return task, known

    @staticmethod
    def _job_fields(
        name: str,
        task: Task[..., Any] | None,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        *,
        delay: float | None = None,
        run_at: _dt.datetime | float | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> _Fields:
        if args is None:
            args = ()
        if type(args) not in (tuple, list) and (
            isinstance(args, (str, bytes)) or not isinstance(args, Sequence)
        ):
            raise TypeError(
                f"args of task {name!r} must be a list or tuple, got {type(args).__qualname__}"
            )
        if kwargs is None:
            kwargs = {}
        if type(kwargs) is not dict and not isinstance(kwargs, Mapping):
            raise TypeError(
                f"kwargs of task {name!r} must be a dict, got {type(kwargs).__qualname__}"
            )
        for key in kwargs:
            if not isinstance(key, str):
                raise TypeError(
                    f"kwargs of task {name!r} must have str keys, got {type(key).__qualname__}"
                )
        if task is not None:
            task.check_arguments(args, kwargs)
        args_json = encode_json(args if type(args) is list else list(args), "args", name)
        kwargs_json = encode_json(kwargs if type(kwargs) is dict else dict(kwargs), "kwargs", name)

        if delay is not None and run_at is not None:
            raise ConfigError(f"task {name!r}: give delay or run_at, not both")
        run_at_ms = 0
        if delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                raise TypeError(
                    f"delay must be seconds as a number, got {type(delay).__qualname__}"
                )
            if not math.isfinite(delay) or delay < 0:
                raise ConfigError(f"task {name!r}: delay must be seconds >= 0, got {delay!r}")
            if delay > 0:
                run_at_ms = _core.now_ms() + max(1, round(delay * 1000))
        elif run_at is not None:
            run_at_ms = _epoch_ms(run_at)

        if unique_key is None and task is not None and task.unique is not None:
            unique_key = task.unique(*args, **kwargs)
        if unique_key is not None and not isinstance(unique_key, str):
            raise TypeError(
                f"the unique key of task {name!r} must be a str, got "
                f"{type(unique_key).__qualname__}"
            )

        return (
            name,
            queue if queue is not None else (task.queue if task else "default"),
            args_json,
            kwargs_json,
            _check_int(
                priority if priority is not None else (task.priority if task else 0), "priority"
            ),
            run_at_ms,
            _check_int(
                max_attempts if max_attempts is not None else (task.max_attempts if task else 3),
                "max_attempts",
            ),
            unique_key,
            _timeout_ms(
                timeout if timeout is not None else (task.timeout if task else None), "timeout"
            ),
        )

    def _enqueue_fields(self, fields: _Fields) -> JobHandle:
        try:
            broker = self.broker
            job_id, created = broker.enqueue(*fields)
        except BrokerUnavailable as exc:
            inline = self._run_inline_instead(fields, exc)
            if inline is None:
                raise
            return inline
        if not created:
            unique_key = fields[7] or ""
            raise UniqueConflict(
                f"task {fields[0]!r}: unique key {unique_key!r} is held by live job {job_id}",
                unique_key,
                job_id,
            )
        return JobHandle(broker, job_id, True)

    def _run_inline_instead(self, fields: _Fields, error: BrokerUnavailable) -> JobHandle | None:
        """With inline_fallback on, run a job the broker refused right here (see
        cinejobs.inline); None when the fallback is off or cannot apply (a task this app does
        not define, or a job meant for later)."""
        name, queue, args_json, kwargs_json, _, run_at_ms, max_attempts = fields[:7]
        task = self._tasks.get(name)
        if not self.inline_fallback or task is None or run_at_ms > _core.now_ms():
            return None
        _log.error(
            "cinejobs: broker %s unavailable (%s); running job of task %s INLINE in this "
            "process (inline_fallback is on): its outcome is not stored",
            redact(self._broker_url),
            error,
            name,
        )
        return run_inline(task.fn, name, queue, max_attempts, args_json, kwargs_json)

    def enqueue(
        self,
        task: str | Task[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> JobHandle:
        """Enqueue a job by task name (or Task); options as for :meth:`Task.enqueue`.

        A name this app knows uses that task's defaults. An unknown name is enqueued as it is
        (queue "default", max_attempts 3) unless the app is strict: a worker elsewhere may
        know it, and a worker that does not fails the job with UnknownTask.
        """
        unknown = set(options) - _ENQUEUE_OPTIONS
        if unknown:
            raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
        name, known = self._lookup(task)
        return self._enqueue_fields(self._job_fields(name, known, args, kwargs, **options))

    def enqueue_many(self, jobs: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[JobHandle]:
        """Enqueue many jobs in one broker call (one transaction): all are stored or none.

        Each item is ``(task, args, kwargs)`` (args and kwargs optional) or a dict with keys
        ``task``, ``args``, ``kwargs`` and any option of :meth:`Task.enqueue`. A unique key
        held by a live job (or by an earlier job of the same batch) does not raise: that
        item's handle has ``created == False`` and names the job holding the key.
        """
        fields: list[_Fields] = []
        for item in jobs:
            if isinstance(item, Mapping):
                spec = dict(item)
                if "task" not in spec:
                    raise TypeError(f"an enqueue_many item needs a 'task' key: {_describe(item)}")
                task = spec.pop("task")
                args = spec.pop("args", ())
                kwargs = spec.pop("kwargs", None)
                unknown = set(spec) - _ENQUEUE_OPTIONS
                if unknown:
                    raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
                options = spec
            elif (
                isinstance(item, Sequence)
                and not isinstance(item, (str, bytes))
                and 1 <= len(item) <= 3
            ):
                task = item[0]
                args = item[1] if len(item) > 1 else ()
                kwargs = item[2] if len(item) > 2 else None
                options = {}
            else:
                raise TypeError(
                    "enqueue_many takes (task, args, kwargs) tuples or dicts with a 'task' key, "
                    f"got {_describe(item)}"
                )
            name, known = self._lookup(task)
            fields.append(self._job_fields(name, known, args, kwargs, **options))
        if not fields:
            return []
        broker = self.broker
        return [
            JobHandle(broker, job_id, created) for job_id, created in broker.enqueue_many(fields)
        ]

    # ---- reading jobs ----

    def get_job(self, job_id: str) -> JobHandle:
        """A handle on an existing job; raises JobNotFound when there is none."""
        handle = JobHandle(self.broker, job_id)
        handle.status()  # raises JobNotFound
        return handle

    def jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Jobs matching the filters, as dicts (see :meth:`JobHandle.info`)."""
        raw = self.broker.list(queue=queue, state=state, task=task, limit=limit, offset=offset)
        return [decode_job(job) for job in raw]

    def counts(self) -> list[tuple[str, str, int]]:
        """(queue, state, count) for every queue and state holding jobs."""
        return [(q, s, int(n)) for q, s, n in self.broker.counts()]

    def cancel(self, job_id: str) -> str:
        """Cancel a job by id; see :meth:`JobHandle.cancel`."""
        return self.broker.cancel(job_id)

    # ---- schedules ----

    def periodic(
        self,
        fn: Callable[P, R] | Task[P, R] | None = None,
        /,
        *,
        cron: str | None = None,
        every: str | float | _dt.timedelta | None = None,
        run_at: _dt.datetime | float | None = None,
        tz: str | None = None,
        name: str | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        grace: float | _dt.timedelta | None = None,
        catch_up: int = 0,
        **task_options: Any,
    ) -> Any:
        """Register a function as a task (or take a Task, when stacked on ``@app.task``) and
        schedule it: ``@app.periodic(cron="0 2 * * *", tz="Europe/Paris")`` or
        ``@app.periodic(every="10s")``. Schedule options as :meth:`schedule`; other options
        go to :meth:`task`. Returns the Task."""

        def register(f: Callable[P, R] | Task[P, R]) -> Task[P, R]:
            task = f if isinstance(f, Task) else self.task(**task_options)(f)
            self.schedule(
                task,
                cron=cron,
                every=every,
                run_at=run_at,
                tz=tz,
                name=name,
                args=args,
                kwargs=kwargs,
                grace=grace,
                catch_up=catch_up,
            )
            return task

        if isinstance(fn, Task) and task_options:
            raise ConfigError(
                f"@app.periodic on task {fn.name!r}: task options "
                f"({', '.join(sorted(task_options))}) belong on @app.task"
            )
        if fn is None:
            return register
        return register(fn)

    def schedule(
        self,
        task: str | Task[..., Any],
        *,
        cron: str | None = None,
        every: str | float | _dt.timedelta | None = None,
        run_at: _dt.datetime | float | None = None,
        tz: str | None = None,
        name: str | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        grace: float | _dt.timedelta | None = None,
        catch_up: int = 0,
    ) -> ScheduleSpec:
        """Schedule a task: exactly one of ``cron`` (five fields, or six with seconds first,
        or a macro such as ``@daily``; read in the IANA zone ``tz``, default UTC), ``every``
        (``"10s"``, a timedelta or seconds; ticks on multiples of it since the Unix epoch) or
        ``run_at`` (one aware datetime or epoch seconds).

        ``name`` (default: the task's name) identifies the schedule in the broker; two
        schedules of one task need different names. Misfires, ticks that passed while no
        scheduler ran: those more than ``grace`` seconds old are dropped (default: no limit);
        of the rest, ``catch_up=0`` runs one (the latest), ``catch_up=N`` the latest N.
        Raises ConfigError for a bad expression or zone (naming the field) or a taken name.
        """
        task_name, known = self._lookup(task)
        schedule_name = name if name is not None else task_name
        if not isinstance(schedule_name, str) or not schedule_name:
            raise ConfigError("a schedule name must be a non-empty string")
        where = f"schedule {schedule_name!r}"
        timing, zone = make_timing(cron=cron, every=every, run_at=run_at, tz=tz, where=where)
        if isinstance(catch_up, bool) or not isinstance(catch_up, int) or catch_up < 0:
            raise ConfigError(f"{where}: catch_up must be a whole number >= 0, got {catch_up!r}")
        fields = self._job_fields(task_name, known, args, kwargs, queue=queue, priority=priority)
        spec = ScheduleSpec(
            name=schedule_name,
            task=task_name,
            timing=timing,
            tz=zone,
            args_json=fields[2],
            kwargs_json=fields[3],
            queue=fields[1],
            priority=fields[4],
            max_attempts=fields[6],
            timeout_ms=fields[8],
            grace=grace_seconds(grace),
            catch_up=catch_up,
        )
        existing = self._schedules.get(schedule_name)
        # Timings compare by what they say (the core objects have no equality).
        if existing is not None and (
            existing.spec != spec.spec or dataclasses.replace(existing, timing=spec.timing) != spec
        ):
            raise ConfigError(
                f"two schedules are named {schedule_name!r}; give one of them another name="
            )
        self._schedules[schedule_name] = spec
        return spec

    def configure_schedules(self, config: Mapping[str, Mapping[str, Any]]) -> list[ScheduleSpec]:
        """Declare schedules from a mapping, as in Django settings::

            CINEJOBS_SCHEDULES = {
                "nightly-report": {"task": "reports.nightly", "cron": "0 2 * * *",
                                   "tz": "Europe/Paris", "kwargs": {"full": True}},
                "heartbeat": {"task": "ops.ping", "every": "30s"},
            }

        Each entry takes :meth:`schedule`'s options; its key is the schedule's name."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"schedules must be a mapping of name to options, got {config!r}")
        allowed = set(inspect.signature(self.schedule).parameters) - {"name"}
        specs = []
        for schedule_name, entry in config.items():
            if not isinstance(entry, Mapping) or "task" not in entry:
                raise ConfigError(
                    f"schedule {schedule_name!r}: expected a mapping with a 'task' key, got "
                    f"{entry!r}"
                )
            unknown = set(entry) - allowed
            if unknown:
                raise ConfigError(
                    f"schedule {schedule_name!r}: unknown option(s) {', '.join(sorted(unknown))}"
                    f"; known: {', '.join(sorted(allowed))}"
                )
            options = dict(entry)
            specs.append(self.schedule(options.pop("task"), name=schedule_name, **options))
        return specs

    @property
    def declared_schedules(self) -> dict[str, ScheduleSpec]:
        """The app's schedules by name (a copy)."""
        return dict(self._schedules)

    def schedules(
        self, *, next_tick_from: Literal["timing", "broker"] = "timing"
    ) -> list[ScheduleStatus]:
        """Every schedule declared in this app or recorded in its broker, with its last tick,
        next tick, last job id and that job's outcome. ``next_tick_from="broker"`` reports the
        next tick the schedulers recorded (stale when none runs) instead of computing it from
        the timing; see :func:`cinejobs.schedules.schedule_statuses`."""
        return schedule_statuses(self.broker, self._schedules, next_tick_from=next_tick_from)

    def schedule_history(self, name: str, limit: int = 100) -> list[tuple[_dt.datetime, str]]:
        """A schedule's enqueued ticks, newest first: (tick, job id)."""
        return [
            (_dt.datetime.fromtimestamp(tick / 1000, tz=_dt.UTC), job_id)
            for tick, job_id, _ in _core.schedule_history(self.broker, name, limit)
        ]

    def scheduler(self, **options: Any) -> Scheduler:
        """A scheduler for this app's schedules (plus the built-in prune schedule); a context
        manager that starts it on enter and stops it on exit. Options as
        :class:`cinejobs.schedules.Scheduler`."""
        return Scheduler(self.broker, list(self._schedules.values()), **options)

    # ---- workers ----

    def default_queues(self) -> list[str]:
        """The queues of the app's tasks, or ["default"] when it has none."""
        return sorted({t.queue for t in self._tasks.values()}) or ["default"]

    def worker(
        self,
        queues: Iterable[str] | None = None,
        concurrency: int | None = None,
        **options: Any,
    ) -> Worker:
        """An embedded worker running this app's tasks (and the builtins ``cinejobs.noop`` and
        ``cinejobs.sleep``) on the app's broker; a context manager that starts it on enter and
        stops it gracefully on exit.

        ``queues`` default to the queues of the app's tasks. Options (None or absent: the
        core's default): ``lease``, ``heartbeat``, ``poll_interval``, ``grace``,
        ``maintenance_interval`` (seconds), ``queue_concurrency`` ({queue: limit}),
        ``max_batch``, ``worker_id``, ``tmdb`` (settings of the native TMDB pipeline: ``rate``,
        ``film_store``, ``cache``, ``rate_limit_store``, ``sync_url``; see
        :mod:`cinejobs.films`).

        Process mode: ``processes=N`` runs the app's tasks in N child processes, each running
        up to ``concurrency`` jobs, while this process keeps the broker; with it
        ``hard_timeout`` (seconds, the default of tasks without their own),
        ``max_jobs_per_child``, ``max_memory_per_child`` (MB) and ``kill_grace`` (seconds from
        SIGTERM to SIGKILL). Each child imports the app again: by the spec the CLI loaded it
        from, else by the module-level name it is bound to.
        """
        if options.get("processes") and options.get("child_command") is None:
            from ._child import child_command

            options["child_command"] = child_command(self)
        return Worker(
            self.broker,
            list(self._tasks.values()),
            queues=list(queues) if queues is not None else self.default_queues(),
            concurrency=concurrency,
            **options,
        )

    def run_worker(
        self,
        queues: Iterable[str] | None = None,
        concurrency: int | None = None,
        *,
        on_start: Callable[[Worker], None] | None = None,
        on_status: Callable[[Worker], None] | None = None,
        on_stopping: Callable[[Worker, int], None] | None = None,
        status_interval: float = 1.0,
        **options: Any,
    ) -> dict[str, Any]:
        """Run a worker until SIGTERM or SIGINT, then stop it gracefully and return its stop
        report ({"finished", "returned", "clean"}).

        Must be called from the main thread (it installs the signal handlers, restoring the
        previous ones on return). A second signal while stopping ends the process at once with
        status 130: the jobs still running go back to the queue when their leases expire.
        ``on_status`` is called every ``status_interval`` seconds.
        """
        return run_until_signalled(
            lambda: self.worker(queues, concurrency, **options),
            on_start=on_start,
            on_status=on_status,
            on_stopping=on_stopping,
            status_interval=status_interval,
        )

    def __repr__(self) -> str:
        return f"<App {redact(self._broker_url)} tasks={len(self._tasks)}>"


def run_until_signalled(
    make_worker: Callable[[], Worker],
    *,
    on_start: Callable[[Worker], None] | None = None,
    on_status: Callable[[Worker], None] | None = None,
    on_stopping: Callable[[Worker, int], None] | None = None,
    status_interval: float = 1.0,
) -> dict[str, Any]:
    """Start the worker ``make_worker()`` builds, run it until SIGTERM or SIGINT, then stop it
    gracefully and return its stop report (see :meth:`App.run_worker`)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_worker installs signal handlers: call it from the main thread")
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker = make_worker()
        worker.start()
        if on_start is not None:
            on_start(worker)
        next_status = time.monotonic() + status_interval
        while not stop.wait(max(0.0, min(0.2, next_status - time.monotonic()))):
            if on_status is not None and time.monotonic() >= next_status:
                on_status(worker)
                next_status = time.monotonic() + status_interval
        if on_stopping is not None:
            on_stopping(worker, signals[0] if signals else 0)
        # stop() runs in a helper thread so that a second signal is handled meanwhile.
        outcome: list[dict[str, Any] | BaseException] = []

        def stop_worker() -> None:
            try:
                outcome.append(worker.stop())
            except BaseException as exc:
                outcome.append(exc)

        stopper = threading.Thread(target=stop_worker, name="cinejobs-stop")
        stopper.start()
        while stopper.is_alive():
            stopper.join(0.2)
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
