"""Exceptions raised by cinejobs.

The C++ core raises the exception of the same name; the extension module maps each one to the
class here, so ``except cinejobs.BrokerUnavailable`` works whichever layer raised it.
"""

from __future__ import annotations

__all__ = [
    "BatcherClosed",
    "BatcherFull",
    "BrokerUnavailable",
    "CinejobsError",
    "ConfigError",
    "InvalidPayload",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "TmdbAuthError",
    "TmdbError",
    "UniqueConflict",
    "UnknownTask",
]


class CinejobsError(Exception):
    """Base class of every error cinejobs raises."""


class ConfigError(CinejobsError, ValueError):
    """A malformed broker URL, an unknown option or an invalid setting."""


class BrokerUnavailable(CinejobsError, ConnectionError):
    """The broker's store cannot be opened or reached; retrying later may succeed."""


class InvalidPayload(CinejobsError, ValueError):
    """A job refused at enqueue: bad arguments, payload over the size limit, bad field."""


class UnknownTask(InvalidPayload, LookupError):
    """No task is registered under the given name."""


class JobNotFound(CinejobsError, LookupError):
    """No job has the given id (it never existed, or was pruned after its retention)."""


class UniqueConflict(CinejobsError):
    """A live job already holds the unique key; ``existing_id`` names that job."""

    def __init__(self, message: str, unique_key: str = "", existing_id: str = "") -> None:
        super().__init__(message)
        self.unique_key = unique_key
        self.existing_id = existing_id


class JobCancelled(CinejobsError):
    """Raised inside a running handler once its job was cancelled; also by result() of a
    cancelled job."""


class JobTimeout(CinejobsError, TimeoutError):
    """Raised inside a running handler once its soft timeout passed."""


class Retry(CinejobsError):
    """Raise inside a task to retry its job: after ``delay`` seconds, or after the task's
    backoff when None. It counts an attempt; with none left, the job ends failed with this
    error. ``reason`` is recorded as the attempt's error message."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not 0 <= delay < 10 * 365 * 86400
        ):
            raise ValueError(f"Retry(delay=...) must be seconds from 0 to 10 years, got {delay!r}")
        super().__init__(reason)
        self.delay = delay


class JobFailed(CinejobsError):
    """Raised by ``JobHandle.result()`` when the job ended failed; carries the stored error."""

    def __init__(self, job_id: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error_type}: {message}")
        self.job_id = job_id
        self.error_type = error_type
        self.error_message = message
        self.traceback = traceback


class BatcherFull(CinejobsError):
    """A Batcher had no room for an item before the timeout (or at once with block=False): its
    sink is slower than its producers."""


class BatcherClosed(CinejobsError, RuntimeError):
    """An item was added to a Batcher after it was closed."""


class TmdbError(CinejobsError):
    """TMDB could not answer (after the client's retries), or answered something unusable."""


class TmdbAuthError(TmdbError, PermissionError):
    """TMDB refused the credentials (TMDB_API_KEY or TMDB_READ_TOKEN); retrying cannot help."""
