"""The example's settings plus a schedule that ticks every second, for the test that runs
`manage.py cinejobs_scheduler --settings filmsite.settings_every_second`. Its task is the
built-in no-op, on the queue the example's worker consumes."""

from .settings import *  # noqa: F403
from .settings import CINEJOBS

CINEJOBS = {
    **CINEJOBS,
    "SCHEDULES": {
        **CINEJOBS["SCHEDULES"],
        "every-second": {"task": "cinejobs.noop", "every": "1s", "queue": "films"},
    },
}
