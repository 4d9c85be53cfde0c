"""JobHandle: a reference to one enqueued job, read from the broker on every call."""

from __future__ import annotations

import json
import time
from typing import Any

from . import _core
from .errors import JobCancelled, JobFailed, JobNotFound

__all__ = ["FINAL_STATES", "STATES", "JobHandle", "decode_job"]

STATES = ("scheduled", "queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def decode_job(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn the extension's job dict into the public one: args, kwargs and result parsed from
    their JSON text (everything else as stored; times are epoch milliseconds). A field whose
    stored text is not JSON (a damaged job, failed with InvalidPayload) is kept as that text, so
    one damaged job can still be read and listed."""
    job = dict(raw)
    job["args"] = _json_or_text(raw["args"])
    job["kwargs"] = _json_or_text(raw["kwargs"])
    result = raw.get("result")
    job["result"] = None if result is None else _json_or_text(result)
    return job


class JobHandle:
    """A job in the broker. Cheap to create; every method asks the broker afresh.

    ``created`` is False when the enqueue that made this handle found a live job holding the
    same unique key (only ``App.enqueue_many`` returns such handles; the single-job enqueue
    raises :class:`UniqueConflict`). The handle then names that existing job.
    """

    __slots__ = ("_broker", "created", "id")

    def __init__(self, broker: _core.Broker, job_id: str, created: bool = True) -> None:
        self._broker = broker
        self.id = job_id
        self.created = created

    def _raw(self) -> dict[str, Any]:
        raw = self._broker.get(self.id)
        if raw is None:
            raise JobNotFound(
                f"no job with id {self.id} (it never existed here, or was pruned after its "
                "result retention)"
            )
        return raw

    def info(self) -> dict[str, Any]:
        """The whole job: id, task, queue, args, kwargs, priority, run_at, attempt,
        max_attempts, unique_key, timeout_ms, state, progress, result, error, created_at,
        started_at, finished_at, cancel_requested. Raises JobNotFound."""
        return decode_job(self._raw())

    job = info

    def status(self) -> str:
        """The job's state: scheduled, queued, running, succeeded, failed or cancelled."""
        return str(self._raw()["state"])

    def progress(self) -> dict[str, Any] | None:
        """The last progress the handler reported ({fraction, step, message}), or None."""
        progress: dict[str, Any] | None = self._raw()["progress"]
        return progress

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> str:
        """Block until the job is final and return its state (succeeded, failed, cancelled).

        Between two looks at the job it waits for the broker's notice that the job may have
        changed (Redis pushes one on every change; SQLite, which cannot push a notice across
        processes, waits a short while), never longer than ``poll`` seconds at a time. Raises
        the builtin TimeoutError when the job is not final within ``timeout`` seconds (None:
        wait for ever).
        """
        limit = float("inf") if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        while True:
            state = self.status()
            if state in FINAL_STATES:
                return state
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {self.id} is still {state} after {limit:g} s")
            # Returns early on a change since the previous wait (none is missed between the
            # read above and this wait), or spuriously; the GIL is released meanwhile.
            self._broker.wait_for_update(self.id, min(left, max(poll, 0.005)))

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job (see :meth:`wait`) and return its result, parsed from JSON.

        Raises JobFailed (with error_type, error_message and traceback) when the job failed,
        JobCancelled when it was cancelled, TimeoutError when it is not final in time.
        """
        self.wait(timeout)
        job = self.info()
        state = job["state"]
        if state == "succeeded":
            return job["result"]
        if state == "cancelled":
            raise JobCancelled(f"job {self.id} was cancelled")
        error = job["error"] or {}
        raise JobFailed(
            self.id,
            str(error.get("type", "")),
            str(error.get("message", "")),
            str(error.get("traceback", "")),
        )

    def cancel(self) -> str:
        """Cancel the job and return its state afterwards.

        A scheduled or queued job is cancelled at once ("cancelled") and never starts, in any
        worker. A running job is asked to stop ("running" is returned): its worker sets the
        job's cancel token at its next heartbeat; the handler stops at its next
        ``current_job().progress()`` call or when it checks ``cancel_requested``, and the job
        ends cancelled. A final job is left as it is. Raises JobNotFound.
        """
        return self._broker.cancel(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        created = "" if self.created else " created=False"
        return f"<JobHandle {self.id}{created}>"
