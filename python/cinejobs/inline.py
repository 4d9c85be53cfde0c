"""Running a job in the caller's process when the broker cannot take it: the fallback an App
turns on with ``inline_fallback=True`` (off by default).

The job is run at once, in the calling thread, exactly as a worker would call it: with its
arguments as JSON carried them, and with ``current_job()`` available (progress is kept on the
returned handle, cancel is never requested). Its outcome lives only in the returned
:class:`InlineHandle`: nothing is stored anywhere, there is no retry, and a web request waits
for the whole job. That is why it is off by default and logged at ERROR level every time.
"""

from __future__ import annotations

import json
import traceback
import uuid
from typing import Any

from .context import CurrentJob, _current
from .errors import JobFailed
from .handle import JobHandle

__all__ = ["InlineHandle", "run_inline"]


class _InlineContext:
    """What CurrentJob reads of a job run inline: no broker behind it."""

    def __init__(self, job_id: str, task: str, queue: str, max_attempts: int) -> None:
        self.id = job_id
        self.task = task
        self.queue = queue
        self.attempt = 1
        self.max_attempts = max_attempts
        self.cancel_requested = False
        self.stop_reason = "none"
        self.last_progress: dict[str, Any] | None = None

    def progress(self, fraction: float, step: str, message: str) -> None:
        self.last_progress = {
            "fraction": min(1.0, max(0.0, fraction)),
            "step": step,
            "message": message,
        }

    def raise_if_stopped(self) -> None:
        return None


class InlineHandle(JobHandle):
    """The outcome of a job run inline, read like a :class:`cinejobs.JobHandle` (nothing of it
    is in the broker: ``app.get_job(id)`` does not know it)."""

    __slots__ = ("_job",)

    def __init__(self, job: dict[str, Any]) -> None:
        self.id = job["id"]
        self.created = True
        self._job = job

    def info(self) -> dict[str, Any]:
        return dict(self._job)

    job = info

    def status(self) -> str:
        return str(self._job["state"])

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> str:
        return self.status()

    def progress(self) -> dict[str, Any] | None:
        progress: dict[str, Any] | None = self._job["progress"]
        return progress

    def result(self, timeout: float | None = None) -> Any:
        error = self._job["error"]
        if error is not None:
            raise JobFailed(self.id, error["type"], error["message"], error["traceback"])
        return self._job["result"]

    def cancel(self) -> str:
        return self.status()

    def __repr__(self) -> str:
        return f"<InlineHandle {self.id} {self.status()}>"


def run_inline(
    fn: Any, name: str, queue: str, max_attempts: int, args_json: str, kwargs_json: str
) -> InlineHandle:
    """Call ``fn`` with the job's arguments (decoded from the JSON a worker would receive) and
    return its outcome. Coroutine functions are run to completion on a fresh event loop."""
    job_id = f"inline-{uuid.uuid4()}"
    context = _InlineContext(job_id, name, queue, max_attempts)
    args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    job: dict[str, Any] = {
        "id": job_id,
        "task": name,
        "queue": queue,
        "args": args,
        "kwargs": kwargs,
        "attempt": 1,
        "max_attempts": max_attempts,
        "state": "succeeded",
        "result": None,
        "error": None,
        "progress": None,
    }
    token = _current.set(CurrentJob(context))  # type: ignore[arg-type]
    try:
        outcome = fn(*args, **kwargs)
        if hasattr(outcome, "__await__"):
            import asyncio

            outcome = asyncio.run(outcome)
        job["result"] = json.loads(json.dumps(outcome))  # what a worker would have stored
    except Exception as exc:
        job["state"] = "failed"
        job["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    finally:
        _current.reset(token)
        job["progress"] = context.last_progress
    return InlineHandle(job)
