"""A worker consuming more queues than one SQLite compound SELECT may name (500 terms) runs the
jobs of every one of them, on every broker."""

from __future__ import annotations

from helpers import wait_until

from cinejobs import App


def test_a_worker_on_600_queues_runs_the_jobs_of_the_first_and_the_last(app: App) -> None:
    @app.task(name="many.queues")
    def echo(n: int) -> int:
        return n

    queues = [f"q{i}" for i in range(600)]
    handles = [echo.enqueue(args=[i], queue=queues[i]) for i in (0, 299, 599)]
    with app.worker(queues=queues, concurrency=2, poll_interval=0.01):
        wait_until(
            lambda: all(h.status() in {"succeeded", "failed"} for h in handles),
            timeout=20,
            what="the jobs of queues q0, q299 and q599 to end",
        )
    assert [h.result() for h in handles] == [0, 299, 599]
