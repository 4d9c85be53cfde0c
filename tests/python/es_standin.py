"""A local stand-in for Elasticsearch's ``_bulk`` API, for the Elasticsearch sink's tests.

It is a real HTTP server on a free loopback port and follows the documented request and response
format: ``POST /_bulk`` or ``POST /<index>/_bulk`` with an NDJSON body (action and metadata lines
``index``/``create``/``update``/``delete``, each but ``delete`` followed by a source line, the
body ending in a newline, ``Content-Type: application/x-ndjson``), answered with
``{"took", "errors", "items": [{<action>: {"_index", "_id", "status", "result" | "error"}}]}``.
A malformed request is refused as Elasticsearch refuses it: HTTP 400 with
``{"error": {"root_cause", "type", "reason"}, "status": 400}`` (406 for a wrong content type), so
it really checks the client.

Faults, set on ``standin.faults``: ``reject_requests`` (the next N requests get a
whole-request 429, with a Retry-After of ``retry_after`` seconds when that is set),
``reject_item_times`` (document id -> how many times that document gets a per-item 429
es_rejected_execution_exception before it is accepted), ``mapping_error`` (a predicate on the
source; true gives a per-item 400 mapper_parsing_exception).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = {"index", "create", "update", "delete"}


@dataclass
class Faults:
    reject_requests: int = 0
    retry_after: int | None = None  # seconds, sent as Retry-After with those 429s
    reject_item_times: dict[str, int] = field(default_factory=dict)
    mapping_error: Callable[[dict[str, Any]], bool] | None = None


class BadRequest(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class ElasticsearchStandIn:
    """Indices in memory: ``docs[index][id] = source``; ``writes[id]`` counts accepted writes
    of a document and ``attempts[id]`` every try (accepted or not); ``requests`` counts _bulk
    requests."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.writes: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.requests = 0
        self.faults = Faults()
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status, payload = standin.handle(
                    self.path, self.headers.get("Content-Type", ""), body
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 429 and standin.faults.retry_after is not None:
                    self.send_header("Retry-After", str(standin.faults.retry_after))
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ElasticsearchStandIn:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # The _bulk API.

    def handle(self, path: str, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts not in (["_bulk"],) and not (len(parts) == 2 and parts[1] == "_bulk"):
            return 404, _error(404, "resource_not_found_exception", f"no handler for {path}")
        media = content_type.split(";")[0].strip()
        if media not in ("application/x-ndjson", "application/json"):
            return 406, {
                "error": f"Content-Type header [{content_type}] is not supported",
                "status": 406,
            }
        with self.lock:
            self.requests += 1
            if self.faults.reject_requests > 0:
                self.faults.reject_requests -= 1
                return 429, _error(
                    429, "es_rejected_execution_exception", "rejected execution of bulk request"
                )
            try:
                operations = _parse_bulk(body, parts[0] if len(parts) == 2 else None)
            except BadRequest as e:
                return 400, _error(400, e.error_type, e.reason)
            started = time.monotonic()
            items = [self._apply(*op) for op in operations]
        return 200, {
            "took": int((time.monotonic() - started) * 1000),
            "errors": any("error" in next(iter(i.values())) for i in items),
            "items": items,
        }

    def _apply(
        self, action: str, index: str, doc_id: str | None, source: dict[str, Any] | None
    ) -> dict[str, Any]:
        docs = self.docs.setdefault(index, {})
        doc_id = doc_id or uuid.uuid4().hex[:20]
        meta: dict[str, Any] = {"_index": index, "_id": doc_id}
        self.attempts[doc_id] = self.attempts.get(doc_id, 0) + 1
        left = self.faults.reject_item_times.get(doc_id, 0)
        if left > 0:
            self.faults.reject_item_times[doc_id] = left - 1
            return {
                action: meta
                | _item_error(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of primary operation",
                )
            }
        if action == "delete":
            if doc_id in docs:
                del docs[doc_id]
                return {action: meta | {"result": "deleted", "status": 200}}
            return {action: meta | {"result": "not_found", "status": 404}}
        assert source is not None
        if action == "update":
            if doc_id not in docs and not source.get("doc_as_upsert"):
                return {
                    action: meta
                    | _item_error(
                        404, "document_missing_exception", f"[{doc_id}]: document missing"
                    )
                }
            source = {**docs.get(doc_id, {}), **source.get("doc", {})}
        if self.faults.mapping_error is not None and self.faults.mapping_error(source):
            return {
                action: meta | _item_error(400, "mapper_parsing_exception", "failed to parse field")
            }
        if action == "create" and doc_id in docs:
            return {
                action: meta
                | _item_error(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, document already exists",
                )
            }
        existed = doc_id in docs
        docs[doc_id] = source
        self.writes[doc_id] = self.writes.get(doc_id, 0) + 1
        return {
            action: meta
            | {
                "result": "updated" if existed else "created",
                "status": 200 if existed else 201,
                "_shards": {"total": 1, "successful": 1, "failed": 0},
            }
        }


def _error(status: int, error_type: str, reason: str) -> dict[str, Any]:
    cause = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _item_error(status: int, error_type: str, reason: str) -> dict[str, Any]:
    return {"status": status, "error": {"type": error_type, "reason": reason}}


def _parse_bulk(
    body: bytes, path_index: str | None
) -> list[tuple[str, str, str | None, dict[str, Any] | None]]:
    if not body:
        raise BadRequest(
            "action_request_validation_exception", "Validation Failed: 1: no requests added;"
        )
    if not body.endswith(b"\n"):
        raise BadRequest(
            "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
        )
    lines = body.decode("utf-8").split("\n")[:-1]
    operations: list[tuple[str, str, str | None, dict[str, Any] | None]] = []
    n = 0
    while n < len(lines):
        try:
            action_line = json.loads(lines[n])
        except json.JSONDecodeError as e:
            raise BadRequest("x_content_parse_exception", f"[{n + 1}:1] {e.msg}") from e
        if not isinstance(action_line, dict) or len(action_line) != 1:
            raise BadRequest(
                "illegal_argument_exception",
                f"Malformed action/metadata line [{n + 1}], expected a simple value "
                "for field [_index] but found [START_OBJECT]",
            )
        action, meta = next(iter(action_line.items()))
        if action not in ACTIONS or not isinstance(meta, dict):
            raise BadRequest(
                "illegal_argument_exception",
                f"Malformed action/metadata line [{n + 1}], expected field "
                f"[create], [delete], [index] or [update] but found [{action}]",
            )
        index = meta.get("_index", path_index)
        if index is None:
            raise BadRequest(
                "action_request_validation_exception", "Validation Failed: 1: index is missing;"
            )
        source = None
        if action != "delete":
            n += 1
            if n >= len(lines):
                raise BadRequest(
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                )
            try:
                source = json.loads(lines[n])
            except json.JSONDecodeError as e:
                raise BadRequest("x_content_parse_exception", f"[{n + 1}:1] {e.msg}") from e
            if not isinstance(source, dict):
                raise BadRequest(
                    "x_content_parse_exception",
                    f"[{n + 1}:1] Malformed content, must start with an object",
                )
        operations.append((action, index, meta.get("_id"), source))
        n += 1
    return operations


def main() -> None:
    """Serve as a process (for the C++ tests): print the base URL, serve until stdin closes.

    Options: --reject-requests N, --reject-item ID:TIMES (repeatable), --mapping-error
    FIELD=VALUE (a document whose FIELD equals the string VALUE gets a per-item 400)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Elasticsearch _bulk stand-in")
    parser.add_argument("--reject-requests", type=int, default=0)
    parser.add_argument("--reject-item", action="append", default=[])
    parser.add_argument("--mapping-error", default=None)
    options = parser.parse_args()
    standin = ElasticsearchStandIn()
    standin.faults.reject_requests = options.reject_requests
    for spec in options.reject_item:
        doc_id, times = spec.split(":")
        standin.faults.reject_item_times[doc_id] = int(times)
    if options.mapping_error:
        name, value = options.mapping_error.split("=", 1)
        standin.faults.mapping_error = lambda doc: doc.get(name) == value
    standin.start()
    print(standin.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or exits)
    standin.close()


if __name__ == "__main__":
    main()
