"""The FastAPI jobs router is safe by default, through a real HTTP client against uvicorn
(apps/fastapi_service.py): unlisted tasks are not enqueued, the host's authentication runs
before every route, clients cannot choose queue, priority or unique key, users see and cancel
only their own jobs, and a broker that is down gives 503, not 500."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import test_fastapi
from test_fastapi import Service

import cinejobs

# The uvicorn service fixture of the FastAPI suite, shared.
start_service = test_fastapi.start_service

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


def test_anonymous_calls_are_refused_by_the_hosts_dependency_and_change_nothing(
    tmp_path: Path, start_service: Callable[..., Service]
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    service = start_service(url, embedded_worker=False)
    for method, path, body in [
        ("POST", "/secure/jobs/films.add", {"args": [1, 2]}),
        ("GET", "/secure/jobs/00000000-0000-0000-0000-000000000000", None),
        ("POST", "/secure/jobs/00000000-0000-0000-0000-000000000000/cancel", None),
        ("GET", "/secure/health", None),
    ]:
        status, answer = service.request(method, path, body)
        assert status == 401, (path, answer)
    assert cinejobs.App(url).jobs() == []


def test_only_listed_tasks_can_be_enqueued(
    tmp_path: Path, start_service: Callable[..., Service]
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    service = start_service(url, embedded_worker=False)
    assert service.request("POST", "/api/jobs/internal.purge_all_users", {})[0] == 404
    assert service.request("POST", "/secure/jobs/films.enrich", {}, ALICE)[0] == 404
    assert service.request("POST", "/secure/jobs/internal.purge_all_users", {}, ALICE)[0] == 404
    assert cinejobs.App(url).jobs() == [], "a refused task was stored"
    assert service.request("POST", "/secure/jobs/films.add", {"args": [1, 2]}, ALICE)[0] == 202


def test_clients_may_not_choose_queue_priority_or_unique_key_unless_allowed(
    tmp_path: Path, start_service: Callable[..., Service]
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    service = start_service(url, embedded_worker=False)
    for option, value in (("queue", "nobody"), ("priority", 2**31 - 1), ("unique_key", "film:42")):
        body = {"args": [1, 2], option: value}
        status, answer = service.request("POST", "/secure/jobs/films.add", body, ALICE)
        assert status == 422, answer
        assert option in answer["detail"]
    assert cinejobs.App(url).jobs() == []
    status, answer = service.request(
        "POST", "/secure/jobs/films.add", {"args": [1, 2], "delay": 60}, ALICE
    )
    assert (status, answer["state"]) == (202, "scheduled")
    # The /api router allows every option, as its own choice.
    status, _ = service.request("POST", "/api/jobs/films.add", {"args": [1, 2], "priority": 5})
    assert status == 202


def test_a_user_cannot_read_or_cancel_another_users_job(
    tmp_path: Path, start_service: Callable[..., Service]
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    service = start_service(url, embedded_worker=False)
    status, answer = service.request(
        "POST", "/secure/jobs/films.add", {"args": [1, 2], "kwargs": {"user": "bob"}}, ALICE
    )
    assert status == 202
    job_id = answer["job_id"]
    job = cinejobs.App(url).get_job(job_id).info()
    assert job["kwargs"] == {"user": "alice"}, "the server sets the owner, not the client"
    assert service.request("GET", f"/secure/jobs/{job_id}", None, BOB)[0] == 404
    assert service.request("POST", f"/secure/jobs/{job_id}/cancel", None, BOB)[0] == 404
    assert cinejobs.App(url).get_job(job_id).status() == "queued", "bob's cancel took effect"
    assert service.request("GET", f"/secure/jobs/{job_id}/events", None, BOB)[0] == 404
    status, mine = service.request("GET", f"/secure/jobs/{job_id}", None, ALICE)
    assert (status, mine["state"]) == (200, "queued")
    status, cancelled = service.request("POST", f"/secure/jobs/{job_id}/cancel", None, ALICE)
    assert (status, cancelled["state"]) == (200, "cancelled")
    assert service.request("GET", "/secure/worker/status", None, ALICE)[0] == 404


def test_a_broker_that_is_down_gives_503_on_every_route(
    start_redis: Callable[..., object], start_service: Callable[..., Service]
) -> None:
    server = start_redis()
    url = server.url(prefix="fastapi-security:")  # type: ignore[attr-defined]
    service = start_service(url, embedded_worker=False)
    status, answer = service.request("POST", "/api/jobs/films.add", {"args": [1, 2]})
    assert status == 202
    job_id = answer["job_id"]
    server.kill()  # type: ignore[attr-defined]
    for method, path, body in [
        ("POST", "/api/jobs/films.add", {"args": [1, 2]}),
        ("GET", f"/api/jobs/{job_id}", None),
        ("POST", f"/api/jobs/{job_id}/cancel", None),
        ("GET", f"/api/jobs/{job_id}/events", None),
        ("GET", "/api/worker/status", None),
        ("GET", "/api/health", None),
    ]:
        status, answer = service.request(method, path, body)
        assert status == 503, (path, status, answer)
