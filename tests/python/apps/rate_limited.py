"""The app the rate limit acceptance test runs in real `cinejobs worker` processes.

``rl.hit`` is limited to 20 starts per second across every worker on the broker, with bursts of
5, and returns the moment it started (epoch seconds), so the test can check every window of the
period. max_attempts=1: a job snoozed by its limit must still run, since snoozes are no attempts.
The broker comes from the worker's --broker option.
"""

from __future__ import annotations

import time

import cinejobs

app = cinejobs.App()

RATE = 20  # per second
BURST = 5


@app.task(name="rl.hit", rate_limit=f"{RATE}/s", rate_limit_burst=BURST, max_attempts=1)
def hit() -> float:
    return time.time()
