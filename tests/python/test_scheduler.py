"""Schedulers in real `cinejobs scheduler` processes: three of them over one broker (each
kind) enqueue every tick of a one-second schedule exactly once, none missed; and a scheduler
killed over several ticks applies each schedule's misfire policy when it comes back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import WorkerProcess, spawn_cli, wait_until

import cinejobs
from cinejobs import _core

APP = "apps.schedules:app"


StartScheduler = Callable[[str], WorkerProcess]


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[StartScheduler]:
    """Start `python -m cinejobs scheduler --app apps.schedules:app` on a broker URL; every one
    still alive at teardown is killed."""
    started: list[WorkerProcess] = []

    def start(broker_url: str) -> WorkerProcess:
        args = ["scheduler", "--app", APP, "--broker", broker_url, "--prune-every", "0"]
        process = spawn_cli(args, tmp_path / f"scheduler-{len(started)}.log", tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=10)


def _history(app: cinejobs.App, name: str) -> list[tuple[int, str, int]]:
    """(tick ms, job id, enqueued at ms) of a schedule, oldest first."""
    return sorted(_core.schedule_history(app.broker, name, 10_000))


def _last_tick(app: cinejobs.App, name: str) -> int:
    for row_name, last_tick, _, _ in _core.schedule_states(app.broker):
        if row_name == name:
            return int(last_tick)
    return 0


@pytest.mark.slow
def test_three_schedulers_enqueue_every_tick_exactly_once(
    app: cinejobs.App, broker_url: str, start_scheduler: StartScheduler
) -> None:
    schedulers = [start_scheduler(broker_url) for _ in range(3)]
    for s in schedulers:
        s.wait_started()
    begun = _core.now_ms()
    # 21 ticks after all three run.
    wait_until(
        lambda: _last_tick(app, "every-second") >= (begun // 1000 + 21) * 1000,
        timeout=40,
        what="21 ticks of the one-second schedule",
    )
    for s in schedulers:
        assert s.proc.poll() is None, s.output()
        s.proc.terminate()
    for s in schedulers:
        assert s.proc.wait(timeout=15) == 0, s.output()

    jobs = app.jobs(task="apps.schedules.tick", limit=1000)
    keys = [j["unique_key"] for j in jobs]
    assert len(keys) == len(set(keys)), "a tick was enqueued twice"
    ticks = sorted(int(k.rsplit(":", 1)[1]) for k in keys)
    assert all(k.startswith("schedule:every-second:") for k in keys)
    assert len(ticks) >= 21
    # None missed: consecutive seconds from the first tick to the last.
    assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000))
    # Each job runs at its tick, and the history agrees with the jobs.
    assert sorted(j["run_at"] for j in jobs) == ticks
    assert [t for t, _, _ in _history(app, "every-second")] == ticks


def _grid(after: int, until: int) -> list[int]:
    """The one-second ticks in (after, until]."""
    return list(range((after // 1000 + 1) * 1000, until // 1000 * 1000 + 1, 1000))


@pytest.mark.slow
def test_a_scheduler_back_after_downtime_applies_each_misfire_policy(
    tmp_path: Path, start_scheduler: StartScheduler
) -> None:
    app = cinejobs.App(f"sqlite:///{tmp_path}/jobs.db")
    first = start_scheduler(app.broker_url)
    first.wait_started()
    wait_until(lambda: len(_history(app, "coalesce")) >= 2, timeout=20, what="two ticks")
    first.proc.kill()  # no chance to finish anything: a crash
    first.proc.wait(timeout=10)
    last_before = {name: _history(app, name)[-1][0] for name in ("coalesce", "catch-up", "grace")}
    # Down over at least five ticks.
    down_until = max(last_before.values()) + 5_500
    wait_until(lambda: _core.now_ms() >= down_until, timeout=15, what="the downtime to pass")

    second = start_scheduler(app.broker_url)
    second.wait_started()
    wait_until(
        lambda: all(_last_tick(app, n) >= down_until + 2_000 for n in last_before),
        timeout=20,
        what="ticks after the restart",
    )
    second.proc.terminate()
    assert second.proc.wait(timeout=15) == 0, second.output()

    for name, last in last_before.items():
        after = [row for row in _history(app, name) if row[0] > last]
        # The restart's first look at the clock: the first enqueue after the downtime.
        restart = min(enqueued for _, _, enqueued in after)
        missed_batch = [tick for tick, _, _ in after if tick <= restart]
        # A tick a few ms before the restart's enqueue may fall either side of its clock read.
        expected = []
        for now in (restart, restart - 50):
            missed = _grid(last, now)
            assert len(missed) >= 5, f"{name}: only {len(missed)} ticks missed"
            if name == "coalesce":
                expected.append(missed[-1:])
            elif name == "catch-up":
                expected.append(missed[-3:])
            else:
                expected.append([t for t in missed if now - t <= 1_500])
        assert missed_batch in expected, f"{name}: enqueued {missed_batch}, expected {expected}"
        # After the misfires, every tick on time again, each once.
        later = [tick for tick, _, _ in after if tick > restart]
        assert later == list(range(later[0], later[-1] + 1000, 1000)) and len(later) >= 2
