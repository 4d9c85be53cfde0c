"""A task with its own queue and attempts, for `cinejobs enqueue` without --app (the README form:
the task is found by importing its module). The broker comes from --broker."""

from __future__ import annotations

import cinejobs

app = cinejobs.App()


@app.task(name="apps.enqueue_target.summarize", queue="enrich", max_attempts=2)
def summarize(book_id: int) -> dict[str, int]:
    return {"book_id": book_id}
