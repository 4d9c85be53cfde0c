"""Job logs: one log record per job start and end, on the ``cinejobs.worker`` logger.

The C++ worker reports every start and end as a job event (it alone counts jobs); :class:`JobLog`
drains those events from a bounded queue on a thread of its own and turns each into a
:class:`logging.LogRecord`, so a slow handler or a slow log never slows the worker. Each record
carries the job's fields as attributes (``job_id``, ``task``, ``queue``, ``attempt``,
``max_attempts``, ``duration``, ``outcome``, ``error_type``, ``error_message``, ``traceback``,
``retry_at``) for formatters, and a failure's traceback as the record's ``exc_text``, which every
standard formatter prints under the message.

Levels: ``started``, ``succeeded`` and ``cancelled`` are INFO; ``retried`` and ``released`` (back
to the queue after a stop's grace) WARNING; ``failed`` ERROR; ``snoozed`` (held back by a rate
limit) INFO after a start line, DEBUG for a job whose handler never started.

:func:`configure_logging` sets up the ``cinejobs`` logger the way ``cinejobs worker`` does
(``--log-level``, ``--log-format text|json``), for programs that run workers themselves.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import sys
import threading
from typing import Any, TextIO

from . import _core
from ._redact import redact
from ._status import StatusLine

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JobLog", "JsonFormatter", "configure_logging"]

LOGGER_NAME = "cinejobs.worker"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

# The job fields every job record carries (None where they do not apply).
JOB_FIELDS = (
    "job_id",
    "task",
    "queue",
    "attempt",
    "max_attempts",
    "duration",
    "outcome",
    "error_type",
    "error_message",
    "traceback",
    "retry_at",
)

_LEVELS = {
    "started": logging.INFO,
    "succeeded": logging.INFO,
    "cancelled": logging.INFO,
    "retried": logging.WARNING,
    "released": logging.WARNING,
    "failed": logging.ERROR,
}
# Events taken per wake-up, and how long the drain thread waits for one.
_BATCH = 1000
_WAIT = 0.2


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


class JobLog:
    """JobLog writes a worker's job events to ``logger`` (``cinejobs.worker`` by default).

    :meth:`start` attaches an event queue to the core worker, which must not have started yet
    (observers are fixed once it runs), and starts the drain thread; nothing the second time.
    What it attaches follows the logger's level at that moment: every event when the logger is
    enabled for INFO; only the ends logged at WARNING and above (retried, released, failed: rare,
    filtered in C++) when it is enabled for WARNING only, as an unconfigured program's loggers
    are; nothing at all when it is disabled or above WARNING, so a worker with logging off pays
    nothing. :meth:`stop` waits until every event left in the queue is logged, then returns;
    it is safe twice and before :meth:`start`. Call it after the core worker stopped, so that the
    last ends are logged too. When the log falls behind by more than ``capacity`` events, the
    oldest are dropped and one WARNING says how many.
    """

    def __init__(
        self,
        core: _core.Worker,
        logger: logging.Logger | None = None,
        *,
        capacity: int = 100_000,
    ) -> None:
        self._core = core
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self._capacity = capacity
        self._queue: _core.JobEventQueue | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = False
        self._dropped = 0
        # Ids of jobs whose start was logged and whose end has not come yet.
        self._running: set[str] = set()

    @property
    def attached(self) -> bool:
        """True when start() attached an event queue to the worker (the logger was enabled)."""
        return self._queue is not None

    def start(self) -> JobLog:
        """Attach the queue and start the drain thread, when the logger is enabled for INFO."""
        if self._started:
            return self
        self._started = True
        if self.logger.disabled or not self.logger.isEnabledFor(logging.WARNING):
            return self
        kinds = (
            None
            if self.logger.isEnabledFor(logging.INFO)
            else [k for k, level in _LEVELS.items() if level >= logging.WARNING]
        )
        queue = _core.JobEventQueue(self._capacity, kinds)
        self._core.add_observer(queue)
        self._queue = queue
        self._thread = threading.Thread(target=self._drain, name="cinejobs-joblog", daemon=False)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Log what is left in the queue, stop the drain thread and return."""
        if self._queue is None:
            return
        self._stopping.set()
        self._queue.close()
        if self._thread is not None:
            self._thread.join()

    def _drain(self) -> None:
        queue = self._queue
        assert queue is not None
        main = threading.main_thread()
        while True:
            events = queue.take(_BATCH, _WAIT)
            self._log_events(events)
            # An interpreter exiting with the worker never stopped must not wait for this
            # (non-daemon) thread: the main thread is no longer alive once it is exiting.
            if not events and (self._stopping.is_set() or not main.is_alive()):
                break
        # close() made take() return at once; whatever came meanwhile is still logged.
        while events := queue.take(_BATCH, 0.0):
            self._log_events(events)
        self._report_dropped(queue)

    def _log_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                self.log_event(event)
            except Exception:  # a broken handler must not end the job log
                logging.getLogger("cinejobs").exception("cannot log a job event")
        if self._queue is not None:
            self._report_dropped(self._queue)

    def _report_dropped(self, queue: _core.JobEventQueue) -> None:
        dropped = queue.dropped
        if dropped > self._dropped:
            self.logger.warning(
                "the job log fell behind: %d job event(s) were dropped (%d in all)",
                dropped - self._dropped,
                dropped,
                extra={"dropped": dropped - self._dropped},
            )
            self._dropped = dropped

    def log_event(self, event: dict[str, Any]) -> None:
        """Log one job event (a dict as JobEventQueue.take returns it)."""
        kind: str = event["kind"]
        job_id: str = event["id"]
        if kind == "started":
            self._running.add(job_id)
            level = logging.INFO
        else:
            was_running = job_id in self._running
            self._running.discard(job_id)
            level = _LEVELS.get(kind, logging.INFO if was_running else logging.DEBUG)
        if not self.logger.isEnabledFor(level):
            return
        error = event.get("error")
        fields: dict[str, Any] = {
            "job_id": job_id,
            "task": event["task"],
            "queue": event["queue"],
            "attempt": event["attempt"],
            "max_attempts": event["max_attempts"],
            "duration": None if kind == "started" else event["duration"],
            "outcome": kind,
            "error_type": error["type"] if error else None,
            "error_message": error["message"] if error else None,
            "traceback": (error["traceback"] or None) if error else None,
            "retry_at": event["retry_at"] / 1000 if event.get("retry_at") else None,
        }
        record = self.logger.makeRecord(
            self.logger.name,
            level,
            "(job event)",
            0,
            _message(event, fields),
            (),  # no %-formatting: an error message may hold a "%"
            None,
            extra=fields,
        )
        record.created = event["at"] / 1000
        record.msecs = event["at"] % 1000
        if fields["traceback"] and kind in ("failed", "retried"):
            # Printed under the message by any standard formatter, as for logger.exception().
            record.exc_text = str(fields["traceback"]).rstrip("\n")
        self.logger.handle(record)


def _attempts(event: dict[str, Any]) -> str:
    limit = event["max_attempts"]
    # Celery deliveries have no cinejobs limit (Celery's max_retries decides).
    return f"attempt {event['attempt']}" + (f"/{limit}" if 0 < limit < 1 << 30 else "")


def _message(event: dict[str, Any], fields: dict[str, Any]) -> str:
    kind = event["kind"]
    head = f"job {event['id']} {event['task']}[{event['queue']}]"
    attempts = _attempts(event)
    if kind == "started":
        return f"{head} started ({attempts})"
    took = _seconds(event["duration"])
    error = (
        f"{fields['error_type']}: {fields['error_message']}"
        if fields["error_type"]
        else "no error recorded"
    )
    retry_in = max(0.0, (event.get("retry_at") or 0) / 1000 - event["at"] / 1000)
    if kind == "succeeded":
        return f"{head} succeeded in {took} ({attempts})"
    if kind == "failed":
        return f"{head} failed in {took} ({attempts}): {error}"
    if kind == "retried":
        return f"{head} failed in {took} ({attempts}), retrying in {_seconds(retry_in)}: {error}"
    if kind == "snoozed":
        return f"{head} held back by its rate limit, runs again in {_seconds(retry_in)}"
    if kind == "cancelled":
        return f"{head} cancelled after {took} ({attempts})"
    if kind == "released":
        return f"{head} returned to its queue by the worker's stop ({attempts})"
    return f"{head} {kind} ({attempts})"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts (ISO 8601, UTC), level, logger, message,
    the job fields of a job record, and a traceback as one string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if hasattr(record, "job_id"):
            for name in JOB_FIELDS:
                out[name] = getattr(record, name, None)
        elif record.exc_info or record.exc_text:
            if not record.exc_text and record.exc_info:
                record.exc_text = self.formatException(record.exc_info)
            out["traceback"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


class _LogHandler(logging.StreamHandler[TextIO]):
    """Writes records to a stream; when the stream and a live status line share a terminal, the
    status line is cleared first and drawn again after the record, so neither garbles the
    other."""

    def __init__(self, stream: TextIO, status: StatusLine | None) -> None:
        super().__init__(stream)
        isatty = getattr(stream, "isatty", None)
        self.status = status if status is not None and isatty is not None and isatty() else None

    def format(self, record: logging.LogRecord) -> str:
        # The last stop before the stream: whatever a record quotes (a job's error, a handler's
        # own message), no secret a URL carries gets out.
        return redact(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is None:
            super().emit(record)
            return
        with self.status.interrupted():
            super().emit(record)


def configure_logging(
    level: str = "info",
    format: str = "text",
    *,
    stream: TextIO | None = None,
    status: StatusLine | None = None,
) -> logging.Logger:
    """Send the ``cinejobs`` loggers' records at ``level`` (debug, info, warning, error) and
    above to ``stream`` (stderr by default) in ``format``: ``text`` (one readable line, a
    failure's traceback under it) or ``json`` (one object per line, for log shippers). Replaces
    what an earlier call installed; records do not propagate to the root logger. ``status`` is a
    live status line drawn on the same terminal, redrawn after each record."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    if format not in LOG_FORMATS:
        raise ValueError(f"log format {format!r} is not one of {', '.join(LOG_FORMATS)}")
    logger = logging.getLogger("cinejobs")
    for old in [h for h in logger.handlers if isinstance(h, _LogHandler)]:
        logger.removeHandler(old)
    handler = _LogHandler(stream if stream is not None else sys.stderr, status)
    handler.setFormatter(
        JsonFormatter()
        if format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    _core_log.start()
    return logger


class _CoreLog:
    """Forwards the C++ core's own messages (a reserve retried, a child process that died) to
    the ``cinejobs.core`` logger, so that they come out in the configured format, not as raw
    lines on stderr. One per process, started by :func:`configure_logging`. At interpreter exit
    the core writes to stderr again and the thread is joined: a thread still inside the core when
    the interpreter finalizes would be torn down there, which C++ does not survive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: _core.LogQueue | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._logger = logging.getLogger("cinejobs.core")

    def start(self) -> None:
        with self._lock:
            if self._queue is not None:
                return
            self._queue = _core.LogQueue()
            _core.install_log_queue(self._queue)
            self._thread = threading.Thread(
                target=self._drain, args=(self._queue,), name="cinejobs-core-log", daemon=True
            )
            self._thread.start()
        atexit.register(self._at_exit)

    def _emit(self, records: list[tuple[int, str, str, int]]) -> None:
        for level, component, message, _at in records:
            self._logger.log(level, "%s: %s", component, message, extra={"component": component})

    def _drain(self, queue: _core.LogQueue) -> None:
        while not self._stopping.is_set():
            self._emit(queue.take(1000, 0.5))
        self._emit(queue.take(100000, 0.0))  # what came before the close

    def _at_exit(self) -> None:
        _core.install_log_queue(None)
        self._stopping.set()
        if self._queue is not None:
            self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


_core_log = _CoreLog()
