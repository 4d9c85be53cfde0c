"""examples/fastapi_app for real: uvicorn on a loopback port with its embedded worker on SQLite,
TMDB served by the local stand-in. A film list is uploaded as a multipart form, the session id
comes back at once, the progress stream is read to its end, and the enriched films are listed
and searched over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, stop_gracefully, wait_until

from cinejobs.tmdb_standin import TmdbStandin

pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app"
LIST = Path(__file__).resolve().parents[1] / "fixtures" / "films_letterboxd.csv"


class ExampleApp:
    def __init__(self, tmp_path: Path, tmdb_env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tmp_path / "uvicorn.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", **tmdb_env)
        env["CINEJOBS_BROKER"] = f"sqlite:///{tmp_path / 'films.db'}"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "main:api", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=EXAMPLE,
            )  # fmt: skip
        wait_until(self._answers, timeout=30, what="the example under uvicorn")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{self.log.read_text()}")
        try:
            return self.request("GET", "/api/health")[0] == 200
        except OSError:
            return False

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def upload(self, name: str, content: bytes) -> tuple[int, Any]:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{name}"\r\nContent-Type: text/csv\r\n\r\n'
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.request(
            "POST", "/sessions", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )

    def events(self, session_id: str) -> list[tuple[str, dict[str, Any]]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        out: list[tuple[str, dict[str, Any]]] = []
        try:
            conn.request("GET", f"/sessions/{session_id}/events")
            response = conn.getresponse()
            assert response.status == 200
            event = ""
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    out.append((event, json.loads(line[len("data: ") :])))
        finally:
            conn.close()
        return out

    def stop(self) -> None:
        stop_gracefully(self.proc)


@pytest.fixture
def example(tmp_path: Path) -> Iterator[ExampleApp]:
    with TmdbStandin(latency_ms=5) as standin:
        env = standin.environ()
        env.pop("TMDB_READ_TOKEN", None)
        env["TMDB_RATE_LIMIT"] = "40/s"  # the stand-in sets no limit; 40/10s would take 20 s
        app = ExampleApp(tmp_path, env)
        try:
            yield app
        finally:
            app.stop()


def test_upload_stream_progress_then_list_and_search_the_films(example: ExampleApp) -> None:
    lines = LIST.read_bytes().splitlines(keepends=True)
    status, body = example.upload("letterboxd.csv", b"".join(lines[:41]))  # header + 40 films
    assert status == 202, body
    assert body["total"] == 40 and body["format"] == "letterboxd"
    session_id = body["session_id"]

    # Searchable at once, whatever enrichment has reached.
    status, found = example.request("GET", "/films/search?q=inception")
    assert status == 200 and [f["session_id"] for f in found] == [session_id]

    events = example.events(session_id)
    assert events[-1][0] == "done" and events[-1][1]["finished"]
    done = [data["total"] - data["pending"] for _, data in events]
    assert done == sorted(done), "progress only moves forward"
    assert events[-1][1]["pending"] == 0 and events[-1][1]["failed"] == 0

    status, films = example.request("GET", f"/sessions/{session_id}/films?status=enriched")
    assert status == 200 and len(films) == events[-1][1]["enriched"] >= 38
    inception = next(f for f in films if f["title"] == "Inception")
    assert inception["tmdb_id"] == 27205 and inception["directors"] == ["Christopher Nolan"]

    status, summary = example.request("GET", f"/sessions/{session_id}")
    assert status == 200 and summary["finished"]


def test_bad_uploads_and_unknown_sessions_are_refused(example: ExampleApp) -> None:
    status, body = example.upload("empty.csv", b"title,year\n")
    assert status == 422 and "no films found" in body["detail"]
    status, body = example.upload("bad.csv", b"title,year\nHeat,nineteen\n")
    assert status == 422 and "line 2" in body["detail"]
    assert example.request("GET", "/sessions/nope")[0] == 404
    assert example.request("GET", "/sessions/nope/films")[0] == 404
