"""A FastAPI app that enriches uploaded film lists from TMDB in the background.

    uvicorn main:api --port 8000          # embedded worker, SQLite in ./films.db by default

    curl -F file=@letterboxd.csv localhost:8000/sessions      # -> 202 {"session_id": ...}
    curl localhost:8000/sessions/<id>                         # progress counts
    curl -N localhost:8000/sessions/<id>/events               # progress as server-sent events
    curl localhost:8000/sessions/<id>/films?status=enriched   # the enriched records
    curl 'localhost:8000/films/search?q=matrix'               # searchable from upload on

The upload is ingested at once (every film stored, one tmdb.enrich job each) and answered with
the session id; the embedded worker enriches the films, keeping to TMDB's rate limit across
every worker on the broker. Set TMDB_API_KEY (or TMDB_READ_TOKEN); TMDB_BASE_URL points at
another server, CINEJOBS_BROKER at another broker, CINEJOBS_WORKER=0 turns the embedded worker
off when workers run as their own service (`cinejobs worker --queues tmdb`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import StreamingResponse

import cinejobs
from cinejobs.contrib.fastapi import jobs_router, lifespan
from cinejobs.films import QUEUE, FilmStore, read_film_list, start_session, summary_line

jobs = cinejobs.App(os.environ.get("CINEJOBS_BROKER", "sqlite:///films.db"))
embedded = os.environ.get("CINEJOBS_WORKER", "1") != "0"
api = FastAPI(title="films", lifespan=lifespan(jobs, worker=embedded, queues=[QUEUE]))
api.include_router(jobs_router(jobs, allow_tasks=()), prefix="/api")


def _store() -> FilmStore:
    return FilmStore(jobs.broker.url)


def _session_or_404(session_id: str) -> dict[str, Any]:
    session = _store().session(session_id)
    if session is None:
        raise HTTPException(404, f"no session {session_id}")
    return session


@api.post("/sessions", status_code=202)
async def upload(file: UploadFile) -> dict[str, Any]:
    """Ingest an uploaded list (Letterboxd export, title,year CSV, or release names)."""
    text = (await file.read()).decode("utf-8-sig", errors="replace")
    name = file.filename or "upload"
    try:
        films = read_film_list(name, text=text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    session_id = await anyio.to_thread.run_sync(
        lambda: start_session(jobs, films.films, source=name)
    )
    return {
        "session_id": session_id,
        "total": len(films.films),
        "format": films.format,
        "skipped": [{"line": n, "text": t, "reason": why} for n, t, why in films.skipped],
    }


@api.get("/sessions/{session_id}")
async def session(session_id: str) -> dict[str, Any]:
    return await anyio.to_thread.run_sync(_session_or_404, session_id)


@api.get("/sessions/{session_id}/events")
async def events(session_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: `progress` whenever the counts change, then `done`."""
    await anyio.to_thread.run_sync(_session_or_404, session_id)

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        while not await request.is_disconnected():
            now = await anyio.to_thread.run_sync(_session_or_404, session_id)
            if now != last:
                kind = "done" if now["finished"] else "progress"
                yield f"event: {kind}\ndata: {json.dumps(now)}\n\n"
                if now["finished"]:
                    return
                last = now
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream")


@api.get("/sessions/{session_id}/films")
async def films(session_id: str, status: str | None = None) -> list[dict[str, Any]]:
    await anyio.to_thread.run_sync(_session_or_404, session_id)
    try:
        rows = await anyio.to_thread.run_sync(lambda: _store().films(session_id, status))
    except cinejobs.ConfigError as exc:  # an unknown status
        raise HTTPException(422, str(exc)) from None
    return [summary_line(f) for f in rows]


@api.get("/films/search")
async def search(q: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = await anyio.to_thread.run_sync(lambda: _store().search(q, limit))
    return [{"session_id": f["session_id"], **summary_line(f)} for f in rows]
