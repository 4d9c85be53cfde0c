"""current_job(): what a running handler sees of its own job.

The runner sets a context variable before it calls the user's function, so ``current_job()``
works in plain functions, in ``async def`` tasks (the variable is carried into the coroutine)
and in anything they call, and fails clearly everywhere else.
"""

from __future__ import annotations

import contextvars

from . import _core

__all__ = ["CurrentJob", "current_job"]


class CurrentJob:
    """The job a handler is running: its id, attempt, progress reporter and cancel token.

    Obtained with :func:`current_job`; only valid while the handler runs.
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: _core.JobContext) -> None:
        self._ctx = ctx

    @property
    def id(self) -> str:
        """The job's id."""
        return self._ctx.id

    @property
    def task(self) -> str:
        """The task name the job was enqueued under."""
        return self._ctx.task

    @property
    def queue(self) -> str:
        """The queue the job was reserved from."""
        return self._ctx.queue

    @property
    def attempt(self) -> int:
        """This delivery's number: 1 on the first run, 2 on the first retry, and so on."""
        return self._ctx.attempt

    @property
    def max_attempts(self) -> int:
        """How many deliveries the job may have in all."""
        return self._ctx.max_attempts

    @property
    def cancel_requested(self) -> bool:
        """True once the job should stop: it was cancelled, ran past its timeout, its worker is
        shutting down past the grace period, or its lease was lost. Long handlers check it, or
        call :meth:`progress` / :meth:`raise_if_cancelled`, which raise."""
        return self._ctx.cancel_requested

    @property
    def stop_reason(self) -> str:
        """Why the job should stop: "none", "cancelled", "timeout", "shutdown" or "lease_lost"."""
        return self._ctx.stop_reason

    def progress(self, fraction: float, step: str = "", message: str = "") -> None:
        """Store the job's progress (fraction 0..1, clamped) where ``JobHandle.progress()`` sees
        it. Raises :class:`JobCancelled` or :class:`JobTimeout` once the job should stop, so a
        handler that reports progress stops there."""
        self._ctx.progress(float(fraction), step, message)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobTimeout` or :class:`JobCancelled` if the job should stop; otherwise
        return at once without touching the broker."""
        self._ctx.raise_if_stopped()

    def __repr__(self) -> str:
        return f"<CurrentJob {self.id} task={self.task!r} attempt={self.attempt}>"


_current: contextvars.ContextVar[CurrentJob | None] = contextvars.ContextVar(
    "cinejobs_current_job", default=None
)


def current_job() -> CurrentJob:
    """Return the job the calling handler is running.

    Raises RuntimeError outside a job (for example when a task function is called directly).
    """
    job = _current.get()
    if job is None:
        raise RuntimeError(
            "cinejobs.current_job() was called outside a running job: it only works inside a "
            "task run by a cinejobs worker (not when the task function is called directly)"
        )
    return job
