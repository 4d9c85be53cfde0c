"""The app the metrics tests run in a real `cinejobs worker --metrics-port`: tasks whose
outcomes are known in advance, so the counters can be checked exactly. All on queue "metrics";
the broker comes from the worker's --broker option."""

from __future__ import annotations

import cinejobs

app = cinejobs.App()


@app.task(name="metrics.ok", queue="metrics", max_attempts=1)
def ok(n: int) -> int:
    return n


@app.task(name="metrics.boom", queue="metrics", max_attempts=1)
def boom() -> None:
    raise ValueError("boom")


@app.task(name="metrics.flaky", queue="metrics", max_attempts=3, retry_backoff=0.05)
def flaky() -> str:
    """Fails its first attempt, succeeds on the second."""
    if cinejobs.current_job().attempt == 1:
        raise ConnectionError("first attempt fails")
    return "second time lucky"


@app.task(name="metrics.doomed", queue="metrics", max_attempts=2, retry_backoff=0.05)
def doomed() -> None:
    """Fails every attempt: retried once, then failed."""
    raise RuntimeError("never works")


@app.task(name="metrics.limited", queue="metrics", max_attempts=1, rate_limit="4/s")
def limited() -> None:
    """Four starts a second: a burst of jobs is snoozed, not failed."""
