"""The drop-in worker: cinejobs runs an unmodified Celery app's tasks from its Redis broker.

The C++ Celery broker (``_core.open_celery_broker``) does the per-message work that must be
fast and atomic: it takes messages from kombu's queue lists into the ``unacked`` hash, renews,
defers, restores and acks them, and writes success documents to the result backend in batches.
This module does what only Python can: decode each message's body, run the task the way
Celery's worker does (a request context, so ``bind=True`` tasks, ``self.retry``,
``autoretry_for``, ``max_retries`` and ``update_state`` work), and turn the outcome into Celery's
states: SUCCESS documents go back to C++ as the job's result; RETRY, FAILURE and REVOKED are
stored through the app's own result backend (rare, and then exactly as Celery stores them);
retries, ``link``/``link_error`` callbacks and chains are published through the app, as Celery
publishes them.

Each delivery's outcome goes back to the C++ worker as what Celery recorded, so that the
worker's counters and job events (the status line, the job log) say the same: SUCCESS is a
success; FAILURE a failure (never retried by cinejobs: Celery's max_retries decides); a
``self.retry`` or ``autoretry_for`` retry is a retry (Celery has published the next message);
REVOKED is a cancellation; an ETA not yet reached and a global rate limit's refusal are snoozes
(held back without counting an attempt, nothing recorded in Celery).

What is refused: chords (the task is marked FAILURE saying so), and any message that is not
JSON protocol 2 (the C++ broker leaves it in its queue for a Celery worker, never decoded).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import logging
import socket
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ... import _core
from ..._redact import redact
from ...context import CurrentJob, _current
from ...worker import Worker
from .batching import close_batchers
from .rate_limit import Snoozed

__all__ = ["CeleryWorker", "RevokedTasks"]

log = logging.getLogger("cinejobs.celery")

# ETAs closer than this are run at once rather than deferred through the broker.
_ETA_SLACK = _dt.timedelta(milliseconds=5)
# Encodes like kombu's JSON serializer for values JSON knows (kombu adds types on top).
_PLAIN_JSON = json.JSONEncoder()
# How often the revoke listener checks whether it should stop.
_LISTEN_TIMEOUT = 0.2


def _parse_time(text: object, what: str, task_id: str) -> _dt.datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"task {task_id}: {what} header {text!r} is not an ISO 8601 time")
    when = _dt.datetime.fromisoformat(text)
    # Celery sends aware times; a naive one is UTC, as Celery's enable_utc default reads it.
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _outcome(
    action: str, exc: BaseException | None, message: str = "", traceback_text: str = ""
) -> _core.RunnerResult:
    """The runner's answer for a delivery that did not succeed: ``action`` is what the C++
    worker does with it ("fail", "retried", "cancel"; see _core.pyi)."""
    if exc is not None:
        message = message or str(exc)
        traceback_text = traceback_text or "".join(traceback.format_exception(exc))
    kind = type(exc).__name__ if exc is not None else "Revoked"
    return (kind, message, traceback_text, None, action)


def decode_body(envelope: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Return (args, kwargs, embed) from a protocol 2 message envelope as kombu's Redis
    transport stores it. Raises ValueError naming what is malformed."""
    if envelope.get("content-type") != "application/json":
        raise ValueError(
            f"content type {envelope.get('content-type')!r} is not application/json: only "
            "JSON messages run on cinejobs (pickle is never decoded)"
        )
    body = envelope.get("body")
    if not isinstance(body, str):
        raise ValueError("the message has no body text")
    encoding = (envelope.get("properties") or {}).get("body_encoding")
    try:
        raw = base64.b64decode(body, validate=True) if encoding == "base64" else body.encode()
        decoded = json.loads(raw.decode(envelope.get("content-encoding") or "utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the message body cannot be decoded: {exc}") from None
    if not (isinstance(decoded, list) and len(decoded) == 3):
        raise ValueError("the body is not protocol 2's [args, kwargs, embed]")
    args, kwargs, embed = decoded
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("the body's args are not a list or its kwargs not an object")
    return args, kwargs, embed if isinstance(embed, dict) else {}


class RevokedTasks:
    """The ids revoked through ``app.control.revoke``: Celery broadcasts each revoke on the
    pidbox fanout channel, which kombu's Redis transport publishes as ``/<db>.celery.pidbox``.
    Like a Celery worker without ``--statedb``, it knows the revokes sent while it runs."""

    def __init__(self, celery_app: Any) -> None:
        import redis

        url = celery_app.conf.broker_url
        self._client = redis.Redis.from_url(url)
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        exchange = celery_app.control.mailbox.exchange.name
        self._channel = f"/{db}.{exchange}"
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(self._channel)
        self._thread = threading.Thread(target=self._listen, name="cinejobs-celery-revokes")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._pubsub.close()
        self._client.close()

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._ids

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=_LISTEN_TIMEOUT)
            except Exception as exc:  # the broker went away: say so, keep trying
                log.warning("revoke listener: %s", exc)
                self._stop.wait(1.0)
                continue
            if message is not None:
                self._handle(message.get("data"))

    def _handle(self, data: object) -> None:
        try:
            envelope = json.loads(data) if isinstance(data, (str, bytes)) else None
            if not isinstance(envelope, dict):
                return
            body = envelope.get("body")
            base64_body = (envelope.get("properties") or {}).get("body_encoding") == "base64"
            if base64_body and isinstance(body, str):
                body = base64.b64decode(body)
            command = json.loads(body) if isinstance(body, (str, bytes)) else None
        except (ValueError, TypeError, binascii.Error):
            return
        if not isinstance(command, dict) or command.get("method") != "revoke":
            return
        ids = (command.get("arguments") or {}).get("task_id")
        with self._lock:
            self._ids.update([ids] if isinstance(ids, str) else list(ids or []))


class _Deferred(Exception):
    """The message's ETA has not come: the broker holds it until then."""


class CeleryRunner:
    """Runs one Celery app's tasks for the C++ worker, message by message."""

    def __init__(self, celery_app: Any, hostname: str, revoked: RevokedTasks) -> None:
        from celery import signature, states
        from celery.app.task import Context
        from celery.backends.base import DisabledBackend
        from celery.exceptions import Ignore, Reject, Retry

        self.app = celery_app
        self.hostname = hostname
        self.revoked = revoked
        self._signature = signature
        self._states = states
        self._context = Context
        self._disabled_backend = DisabledBackend
        self._ignore, self._reject, self._retry = Ignore, Reject, Retry
        from celery._state import _task_stack

        self._task_stack = _task_stack
        conf = celery_app.conf
        self._extended_results = bool(conf.find_value_for_key("extended", "result"))
        self._plain_json = conf.result_serializer == "json"
        self._timezone = celery_app.timezone

    def runner(self, task: Any) -> Callable[[_core.JobContext], _core.RunnerResult]:
        """Build the callable the C++ worker calls (GIL held) for each message of ``task``."""
        from celery.app.trace import task_has_custom

        fun = task if task_has_custom(task, "__call__") else task.run

        def run(ctx: _core.JobContext) -> _core.RunnerResult:
            # cinejobs.current_job() (and report_progress) work in Celery tasks too.
            token = _current.set(CurrentJob(ctx))
            try:
                return self._run(task, fun, ctx)
            except _Deferred as deferred:
                # Held back in place until its time: not an attempt, nothing stored.
                return ("Deferred", str(deferred), "", int(deferred.args[1]), "snooze")
            except BaseException as exc:  # never let the C++ worker retry on its own
                task_id = _task_id(ctx.args)
                log.exception("cinejobs could not run Celery task %s[%s]", task.name, task_id)
                if task_id:
                    self._store_failure(task, task_id, exc, None)
                return _outcome("fail", exc)
            finally:
                _current.reset(token)

        run.__qualname__ = run.__name__ = f"celery[{task.name}]"
        return run

    def _run(self, task: Any, fun: Callable[..., Any], ctx: _core.JobContext) -> _core.RunnerResult:
        envelope = json.loads(ctx.args)
        headers: dict[str, Any] = envelope.get("headers") or {}
        properties: dict[str, Any] = envelope.get("properties") or {}
        task_id: str = headers["id"]  # ctx.id is the delivery tag
        args, kwargs, embed = decode_body(envelope)
        info = properties.get("delivery_info") or {}
        request: dict[str, Any] = {
            **headers,
            "properties": properties,
            "reply_to": properties.get("reply_to"),
            "correlation_id": properties.get("correlation_id"),
            "hostname": self.hostname,
            "delivery_info": {
                "exchange": info.get("exchange"),
                "routing_key": info.get("routing_key"),
                "priority": properties.get("priority"),
                "redelivered": info.get("redelivered", False),
            },
            "args": args,
            "kwargs": kwargs,
            **embed,
        }
        context = self._context(request, args=args, kwargs=kwargs, called_directly=False)
        ignore_result = headers.get("ignore_result")
        if ignore_result is None:
            ignore_result = task.ignore_result
        store_errors = not ignore_result or task.store_errors_even_if_ignored
        if task_id in self.revoked:
            return self._revoked(task, task_id, context, "revoked", store_errors)
        expires = _parse_time(headers.get("expires"), "expires", task_id)
        now = _now()
        if expires is not None and expires < now:
            return self._revoked(task, task_id, context, "expired", store_errors)
        eta = _parse_time(headers.get("eta"), "eta", task_id)
        if eta is not None and eta - now > _ETA_SLACK:
            raise _Deferred(f"ETA {eta.isoformat()}", round(eta.timestamp() * 1000))
        if embed.get("chord"):
            exc = NotImplementedError(
                f"task {task.name}[{task_id}] is part of a chord, which cinejobs worker --celery "
                "does not run yet (see docs/celery.md): run chords on a Celery worker"
            )
            self._store_failure(task, task_id, exc, context, store_errors)
            return _outcome("fail", exc)

        task.request_stack.push(context)
        self._task_stack.push(task)
        try:
            try:
                retval = fun(*args, **kwargs)
            except Snoozed as snoozed:
                # Refused by the task's global rate limit: held back like a message with an ETA,
                # in place (nothing published, no state stored, `retries` unchanged).
                until = _now() + _dt.timedelta(seconds=snoozed.delay)
                raise _Deferred(str(snoozed), round(until.timestamp() * 1000)) from None
            except self._retry as reason:
                text = traceback.format_exc()
                task.backend.mark_as_retry(task_id, reason.exc, text, request=context)
                task.on_retry(reason.exc, task_id, args, kwargs, None)
                # Task.retry has published the next message: this delivery ends as a retry.
                return ("Retry", str(reason), text, None, "retried")
            except self._ignore:
                return "null"
            except self._reject as reject:
                if reject.requeue:
                    raise _Deferred(
                        "rejected with requeue", round(_now().timestamp() * 1000)
                    ) from None
                return "null"
            except Exception as exc:
                self._store_failure(task, task_id, exc, context, store_errors)
                self._after_return(task, self._states.FAILURE, exc, task_id, args, kwargs)
                return _outcome("fail", exc)
            try:
                self._publish_followers(context, task_id, retval)
                document = (
                    "null" if ignore_result else self._success_document(task, retval, context)
                )
            except Exception as exc:  # a result the backend cannot encode, a broker error
                self._store_failure(task, task_id, exc, context, store_errors)
                self._after_return(task, self._states.FAILURE, exc, task_id, args, kwargs)
                return _outcome("fail", exc)
            task.on_success(retval, task_id, args, kwargs)
            self._after_return(task, self._states.SUCCESS, retval, task_id, args, kwargs)
            return document
        finally:
            self._task_stack.pop()
            task.request_stack.pop()

    def _success_document(self, task: Any, retval: Any, context: Any) -> str:
        """The SUCCESS document Celery's backend would store (``_get_result_meta`` plus the
        task id), built directly: Celery's own path costs more than running a short task."""
        backend = task.backend
        if isinstance(backend, self._disabled_backend):
            return "null"
        if self._extended_results:
            meta = backend._get_result_meta(
                result=retval, state=self._states.SUCCESS, traceback=None, request=context
            )
        else:
            meta = {
                "status": self._states.SUCCESS,
                "result": retval,
                "traceback": None,
                "children": [r.as_tuple() for r in getattr(context, "children", None) or ()],
                "date_done": _dt.datetime.now(self._timezone).isoformat(),
            }
            if context.group:
                meta["group_id"] = context.group
            if context.parent_id:
                meta["parent_id"] = context.parent_id
        meta["task_id"] = context.id
        if self._plain_json:
            try:
                # Plain JSON values encode exactly as kombu's JSON serializer writes them.
                return _PLAIN_JSON.encode(meta)
            except TypeError:
                pass  # a datetime, UUID, Decimal...: kombu's encoder knows them
        document = backend.encode(meta)
        return document if isinstance(document, str) else document.decode()

    def _publish_followers(self, context: Any, task_id: str, retval: Any) -> None:
        """Apply link callbacks and the chain's next task with this result, as Celery's tracer
        does (before the result is stored, so they count as its children)."""
        priority = context.delivery_info.get("priority")
        for callback in context.callbacks or ():
            sig = self._signature(callback, app=self.app)
            sig.apply_async(
                (retval,), parent_id=task_id, root_id=context.root_id, priority=priority
            )
        chain = list(context.chain or ())
        if chain:
            following = self._signature(chain.pop(), app=self.app)
            following.apply_async(
                (retval,),
                chain=chain,
                parent_id=task_id,
                root_id=context.root_id,
                priority=priority,
            )

    def _store_failure(
        self, task: Any, task_id: str, exc: BaseException, context: Any, store: bool = True
    ) -> None:
        """Record FAILURE through the backend (which also calls the link_error errbacks) and
        the task's on_failure hook."""
        text = "".join(traceback.format_exception(exc))
        task.backend.mark_as_failure(
            task_id, exc, text, request=context, store_result=store, call_errbacks=True
        )
        if context is not None:
            task.on_failure(exc, task_id, context.args, context.kwargs, None)

    def _revoked(
        self, task: Any, task_id: str, context: Any, reason: str, store: bool
    ) -> _core.RunnerResult:
        task.backend.mark_as_revoked(task_id, reason, request=context, store_result=store)
        return _outcome("cancel", None, f"task {task_id} {reason}")

    def _after_return(
        self, task: Any, state: str, retval: Any, task_id: str, args: Any, kwargs: Any
    ) -> None:
        task.after_return(state, retval, task_id, args, kwargs, None)


def _task_id(envelope: str) -> str:
    """The task id of a message envelope, or "" when it cannot be read."""
    try:
        return str(json.loads(envelope)["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return ""


class CeleryWorker(Worker):
    """An embedded cinejobs worker for a Celery app: ``cinejobs worker --celery`` runs one.

    Reads the broker and result backend URLs, the visibility timeout and result_expires from
    the app's configuration, and consumes ``queues`` (default: the app's default queue).
    """

    def __init__(
        self,
        celery_app: Any,
        *,
        queues: Iterable[str] | None = None,
        concurrency: int | None = None,
        lease: float | None = None,
        grace: float | None = None,
        poll_interval: float | None = None,
        maintenance_interval: float = 0.25,
        **options: Any,
    ) -> None:
        conf = celery_app.conf
        celery_app.loader.import_default_modules()
        broker = _core.open_celery_broker(
            _redis_url(conf.broker_url, "broker_url"),
            backend_url=_backend_url(conf.result_backend),
            visibility_timeout=float(
                (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
            ),
            result_expires=_seconds(conf.result_expires),
        )
        self.celery_app = celery_app
        self.revoked = RevokedTasks(celery_app)
        super().__init__(
            broker,
            (),
            queues=list(queues or [conf.task_default_queue]),
            concurrency=concurrency,
            lease=lease,
            grace=grace,
            poll_interval=poll_interval,
            maintenance_interval=maintenance_interval,
            **options,
        )
        runner = CeleryRunner(celery_app, f"cinejobs@{socket.gethostname()}", self.revoked)
        self.celery_tasks = sorted(celery_app.tasks)
        for name in self.celery_tasks:
            self.register(name, runner.runner(celery_app.tasks[name]))

    @property
    def task_names(self) -> list[str]:
        return [name for name in self.celery_tasks if not name.startswith("celery.")]

    def start(self) -> CeleryWorker:
        self.revoked.start()
        super().start()
        return self

    def stop(self, grace: float | None = None) -> dict[str, Any]:
        report = super().stop(grace)
        self.revoked.stop()
        # What the app's tasks batched in this process goes out before the worker is gone.
        close_batchers(self.celery_app)
        return report


def _redis_url(url: object, what: str) -> str:
    if not isinstance(url, str) or not url.startswith(("redis://", "unix://")):
        from ...errors import ConfigError

        raise ConfigError(
            f"the Celery app's {what} is {redact(repr(url))}: cinejobs worker --celery reads "
            "Celery's Redis "
            "transport (redis://host:port/db); point the app at Redis or run a Celery worker"
        )
    return url


def _backend_url(url: object) -> str:
    if url is None or url in ("", "disabled"):
        return ""
    return _redis_url(url, "result_backend")


def _seconds(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    from ...errors import ConfigError

    raise ConfigError(f"the Celery app's result_expires {value!r} is not a number of seconds")
