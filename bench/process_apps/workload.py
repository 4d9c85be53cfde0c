"""The CPU-bound workload both engines run: pure-Python arithmetic, holding the GIL throughout."""

from __future__ import annotations

import time


def spin(n: int) -> int:
    """``n`` rounds of integer arithmetic in the interpreter (no C call that releases the GIL)."""
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
    return acc


def calibrate(target: float = 0.005, samples: int = 15) -> tuple[int, float]:
    """The loop count for which :func:`spin` takes about ``target`` seconds of CPU in this
    process, and the time measured for it.

    Times are this thread's CPU time (a call preempted by another process does not look
    slower), each estimate the least of ``samples`` calls.
    """

    def fastest(n: int) -> float:
        times = []
        for _ in range(samples):
            start = time.thread_time()
            spin(n)
            times.append(time.thread_time() - start)
        return min(times)

    n = 1_000
    fastest(n)  # warm-up
    while (t := fastest(n)) < target / 4:
        n *= 2
    for _ in range(2):
        n = max(1, round(n * target / t))
        t = fastest(n)
    return n, t
