"""cinejobs.contrib.fastapi for real: tests/python/apps/fastapi_service.py runs under uvicorn on
a free loopback port (its lifespan starting an embedded worker, and a scheduler when asked) and
is driven over HTTP, the server-sent event stream read to its end. Runs on every broker kind."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, spawn_cli, stop_gracefully, wait_until

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent


class Service:
    """One uvicorn process serving apps/fastapi_service.py."""

    def __init__(
        self,
        broker_url: str,
        log: Path,
        embedded_worker: bool = True,
        embedded_scheduler: bool = False,
    ) -> None:
        self.port = free_port()
        self.log = log
        env = dict(os.environ, CINEJOBS_BROKER=broker_url, PYTHONUNBUFFERED="1")
        env["EMBEDDED_WORKER"] = "1" if embedded_worker else "0"
        env["EMBEDDED_SCHEDULER"] = "1" if embedded_scheduler else "0"
        env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")])
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "apps.fastapi_service:api",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=APPS,
            )  # fmt: skip
        wait_until(self._answers, timeout=30, what=f"uvicorn on port {self.port}")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{self.log.read_text()}")
        try:
            self.request("GET", "/api/health")
        except OSError:
            return False
        return True

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body)
            sent = dict(headers or {})
            if body is not None:
                sent["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's event stream, as (event, data) pairs, until the server ends it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", f"/api/jobs/{job_id}/events")
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Type", "").startswith("text/event-stream")
            event, data = "", ""
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = line[len("data: ") :]
                elif line == "" and event:
                    yield event, json.loads(data)
                    event, data = "", ""
        finally:
            conn.close()

    def stop(self) -> int:
        return stop_gracefully(self.proc)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    services: list[Service] = []

    def start(
        broker_url: str, embedded_worker: bool = True, embedded_scheduler: bool = False
    ) -> Service:
        log = tmp_path / f"uvicorn-{len(services)}.log"
        service = Service(broker_url, log, embedded_worker, embedded_scheduler)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


def final_job(service: Service, job_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        status, job = service.request("GET", f"/api/jobs/{job_id}")
        assert status == 200
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = wait_until(final, timeout=30, what=f"job {job_id} to end")
    assert job is not None
    return job


def test_enqueue_then_stream_progress_to_the_end(
    broker_url: str, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service(broker_url)
    gates = tmp_path / "gates"
    gates.mkdir()
    status, body = service.request(
        "POST", "/api/jobs/films.enrich", {"args": ["Heat", 3, str(gates)]}
    )
    assert status == 202
    assert body["state"] in ("queued", "running")
    job_id = body["job_id"]

    seen: list[tuple[str, dict[str, Any]]] = []
    for event, data in service.events(job_id):
        seen.append((event, data))
        if event == "progress" and data["state"] == "running":
            # Open the gate of the next step only once the previous step's progress arrived,
            # so every step is a change the stream must report.
            done = 0 if data["progress"] is None else round(data["progress"]["fraction"] * 3)
            (gates / f"{job_id}-{done}").touch()
    steps = [d["progress"]["step"] for e, d in seen if e == "progress" and d["progress"]]
    # Steps 1 and 2 each held the job until the stream reported them; the last step's
    # progress may come as its own event or only in the final one (the job ends right after).
    assert steps in (["step-1", "step-2"], ["step-1", "step-2", "step-3"])
    last_event, last = seen[-1]
    assert last_event == "done"
    assert last["state"] == "succeeded"
    assert last["result"] == {"title": "Heat", "steps": 3}
    assert last["progress"] == {"fraction": 1.0, "step": "step-3", "message": "Heat: 3"}

    status, job = service.request("GET", f"/api/jobs/{job_id}")
    assert (status, job["state"], job["result"]) == (200, "succeeded", last["result"])


def test_unique_key_conflict_answers_409_naming_the_live_job(
    broker_url: str, start_service: Callable[..., Service]
) -> None:
    service = start_service(broker_url, embedded_worker=False)  # the first job stays queued
    status, first = service.request(
        "POST", "/api/jobs/films.add", {"args": [1, 2], "unique_key": "film-42"}
    )
    assert (status, first["state"]) == (202, "queued")
    status, conflict = service.request(
        "POST", "/api/jobs/films.add", {"args": [1, 2], "unique_key": "film-42"}
    )
    assert status == 409
    assert conflict["job_id"] == first["job_id"]
    assert "film-42" in conflict["detail"]


def test_bad_requests_are_refused_with_what_was_wrong(
    broker_url: str, start_service: Callable[..., Service]
) -> None:
    service = start_service(broker_url, embedded_worker=False)
    status, body = service.request("POST", "/api/jobs/os.system", {"args": ["rm -rf /"]})
    assert status == 404
    assert "unknown task 'os.system'" in body["detail"]
    status, body = service.request("POST", "/api/jobs/films.add", {"args": [1, 2], "delay": -5})
    assert status == 422
    assert "delay" in body["detail"]
    status, body = service.request("POST", "/api/jobs/films.add", {"args": "not a list"})
    assert status == 422
    status, body = service.request("GET", "/api/jobs/00000000-0000-4000-8000-000000000000")
    assert status == 404
    assert "no job with id" in body["detail"]
    status, _ = service.request("POST", "/api/jobs/00000000-0000-4000-8000-000000000000/cancel")
    assert status == 404


def test_cancel_of_a_running_job_stops_it(
    broker_url: str, start_service: Callable[..., Service]
) -> None:
    service = start_service(broker_url)
    status, body = service.request("POST", "/api/jobs/films.slow", {"args": [60]})
    assert status == 202
    job_id = body["job_id"]
    wait_until(
        lambda: service.request("GET", f"/api/jobs/{job_id}")[1]["state"] == "running",
        timeout=30,
        what="the slow job to start",
    )
    status, cancelled = service.request("POST", f"/api/jobs/{job_id}/cancel")
    assert (status, cancelled) == (200, {"job_id": job_id, "state": "running"})
    assert final_job(service, job_id)["state"] == "cancelled"


def test_worker_status_and_health(broker_url: str, start_service: Callable[..., Service]) -> None:
    service = start_service(broker_url)
    status, body = service.request("POST", "/api/jobs/films.add", {"args": [2, 3]})
    assert status == 202
    assert final_job(service, body["job_id"])["result"] == 5
    status, report = service.request("GET", "/api/worker/status")
    assert status == 200
    assert report["worker"]["running"] is True
    assert report["worker"]["queues"] == ["web"]
    assert report["worker"]["stats"]["succeeded"] >= 1
    assert report["queues"]["web"]["succeeded"] >= 1
    assert service.request("GET", "/api/health") == (
        200,
        {"status": "ok", "broker": broker_url.split(":")[0].replace("postgresql", "postgres")},
    )


def status_report(service: Service) -> dict[str, Any]:
    status, report = service.request("GET", "/api/worker/status")
    assert status == 200, report
    return report  # type: ignore[no-any-return]


def every_second(report: dict[str, Any]) -> dict[str, Any]:
    """The status of the service's one-second schedule."""
    return next(s for s in report["schedules"] if s["name"] == "every-second")


def next_tick_report(service: Service, after: int) -> dict[str, Any] | None:
    """The status report once the one-second schedule's last tick is later than ``after``."""
    report = status_report(service)
    last = every_second(report)["last_tick"]
    return report if last is not None and last > after else None


def test_the_embedded_scheduler_runs_a_periodic_task_and_status_follows_its_ticks(
    broker_url: str, start_service: Callable[..., Service]
) -> None:
    service = start_service(broker_url, embedded_scheduler=True)
    first = wait_until(lambda: next_tick_report(service, 0), timeout=30, what="a first tick")
    assert first["worker"]["running"] is True
    assert first["scheduler"]["running"] is True
    assert first["scheduler"]["last_error"] is None
    assert "every-second" in first["scheduler"]["schedules"]
    one = every_second(first)
    assert (one["spec"], one["tz"]) == ("every 1s", "UTC")
    assert one["next_tick"] == one["last_tick"] + 1000

    later = wait_until(
        lambda: next_tick_report(service, one["last_tick"]), timeout=30, what="a later tick"
    )
    two = every_second(later)
    # The last tick moved on to the tick announced as next (or past it), and next with it.
    assert two["last_tick"] >= one["next_tick"]
    assert two["next_tick"] == two["last_tick"] + 1000
    assert two["last_job_id"] != one["last_job_id"]

    # The ticks' jobs ran on the embedded worker.
    for tick in (one, two):
        job = final_job(service, tick["last_job_id"])
        assert (job["task"], job["state"], job["result"]) == ("films.tick", "succeeded", "tick")
    assert status_report(service)["queues"]["web"]["succeeded"] >= 2
    # Shutdown stops the scheduler, then the worker.
    assert service.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in service.log.read_text()


def test_status_reports_the_ticks_of_a_scheduler_in_another_process(
    broker_url: str,
    start_service: Callable[..., Service],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The web process runs neither worker nor scheduler; `cinejobs scheduler` runs apart.
    service = start_service(broker_url, embedded_worker=False)
    monkeypatch.setenv("CINEJOBS_BROKER", broker_url)  # apps.fastapi_service reads it
    scheduler = spawn_cli(
        ["scheduler", "--app", "apps.fastapi_service:jobs", "--prune-every", "0"],
        tmp_path / "scheduler.log",
        tmp_path,
    )
    scheduler.wait_started()
    first = wait_until(lambda: next_tick_report(service, 0), timeout=30, what="a first tick")
    assert (first["worker"], first["scheduler"]) == (None, None)
    one = every_second(first)
    later = wait_until(
        lambda: next_tick_report(service, one["last_tick"]), timeout=30, what="a later tick"
    )
    two = every_second(later)
    assert two["last_tick"] >= one["next_tick"]
    assert two["next_tick"] == two["last_tick"] + 1000
    # No worker runs, so the ticks' jobs wait in their queue.
    assert later["queues"]["web"]["queued"] >= 2

    scheduler.terminate()
    assert scheduler.wait() == 0, scheduler.output()
    stopped = every_second(status_report(service))
    # Once its time has passed, the recorded next tick stays where the last scheduler left
    # it: a next tick in the past says that no scheduler runs the schedule.
    wait_until(
        lambda: time.time() * 1000 > stopped["next_tick"] + 1000,
        timeout=30,
        what="the recorded next tick to pass",
    )
    assert every_second(status_report(service)) == stopped


def test_health_answers_503_when_the_broker_is_down(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(
        f"redis://127.0.0.1:{free_port()}/0?timeout_ms=300", embedded_worker=False
    )
    status, body = service.request("GET", "/api/health")
    assert status == 503
    assert body["status"] == "unavailable"
    assert "127.0.0.1" in body["detail"]


def test_sigterm_stops_the_embedded_worker_and_leaves_queued_jobs_queued(
    broker_url: str, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service(broker_url)
    gates = tmp_path / "gates"
    gates.mkdir()
    # Four jobs wait at their first gate (the worker's concurrency is 4); a fifth stays queued.
    ids = [
        service.request("POST", "/api/jobs/films.enrich", {"args": ["Ran", 1, str(gates)]})[1][
            "job_id"
        ]
        for _ in range(5)
    ]

    def running() -> int:
        return sum(service.request("GET", f"/api/jobs/{i}")[1]["state"] == "running" for i in ids)

    wait_until(lambda: running() == 4, timeout=30, what="four jobs to run")
    for job_id in ids:
        (gates / f"{job_id}-0").touch()  # the running ones may now finish within the grace
    # uvicorn runs the lifespan's shutdown, then re-raises the signal it caught.
    assert service.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in service.log.read_text()
    import cinejobs

    app = cinejobs.App(broker_url)
    states = sorted(app.get_job(i).status() for i in ids)
    app.close()
    assert "running" not in states, states
    assert set(states) <= {"succeeded", "queued"}
