"""The app the scheduler tests run in real `cinejobs scheduler` processes: schedules of one
second, with each misfire policy. The tasks do nothing; the tests read what was enqueued. The
broker comes from the --broker option."""

from __future__ import annotations

import cinejobs

app = cinejobs.App()


@app.periodic(every="1s", name="every-second")
def tick() -> None:
    """Enqueued once per second by however many schedulers run."""


@app.task
def noted() -> None:
    """Scheduled below under three misfire policies."""


app.configure_schedules(
    {
        "coalesce": {"task": noted, "every": "1s"},
        "catch-up": {"task": noted, "every": "1s", "catch_up": 3},
        "grace": {"task": noted, "every": "1s", "grace": 1.5, "catch_up": 100},
    }
)
