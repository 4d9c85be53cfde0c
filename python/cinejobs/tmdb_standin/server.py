"""TmdbStandin: a real HTTP server on a loopback port that answers like TMDB's v3 API, for tests,
benchmarks and `cinejobs demo` when no TMDB credentials are set. It is not TMDB: it serves only
the bundled films and shows, in English.

Besides TMDB's paths it has a control surface under /__standin__/ (not part of TMDB's API):
  GET  /__standin__/config   the current settings (see behaviour.Settings)
  POST /__standin__/config   change settings: a JSON object of setting -> value, plus
                             "fault_schedule": [...] to queue faults for the next requests
  GET  /__standin__/stats    request counts: total, by status, by path, 429s, faults, in flight
  POST /__standin__/reset    clear the counters, the rate window and any queued faults
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from . import api
from .behaviour import Behaviour, Settings, updated
from .catalogue import Catalogue, bundled

CONTROL_PREFIX = "/__standin__/"

# What a gateway in front of TMDB sends when TMDB itself does not answer: HTML, not JSON.
_BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: TmdbStandin) -> None:
        self.standin = standin
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Ends every open connection, so keep-alive readers and hung requests let go."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections as with TMDB
    # Headers and body go out in two writes; without TCP_NODELAY the body waits for the
    # client's delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True
    server_version = "tmdb-standin"

    _on_answer: Callable[[int | None], None] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control("GET", url.path)
        else:
            self._api(url.path, parse_qs(url.query, keep_blank_values=True))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control("POST", url.path)
        else:
            self._drain_body()
            self._send_json(api.error(api.NOT_FOUND))

    # --- TMDB's API -------------------------------------------------------------------------

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        standin = self.server.standin
        behaviour = standin.behaviour
        admission = behaviour.admit()
        template = api.path_template(path)
        # Counted just before the answer goes out, so a client that has its answer also finds
        # it in the stats.
        self._on_answer = lambda status: behaviour.finished(template, status)
        try:
            if admission.retry_after_s is not None:
                answer = api.rate_limited(admission.rate_limit, admission.retry_after_s)
                answer.headers.update(admission.limit_headers)
                self._send_json(answer)
                return
            if admission.latency_s and standin.stopping.wait(admission.latency_s):
                self._drop()
                return
            fault = admission.fault
            if fault == "hang":
                standin.stopping.wait(behaviour.settings.hang_s)
                self._drop()
                return
            if fault in api.FAULT_ERRORS:
                self._send_json(api.error(api.FAULT_ERRORS[fault]), admission.limit_headers)
                return
            if fault == "502":
                self._send(502, _BAD_GATEWAY_PAGE, "text/html", admission.limit_headers)
                return
            settings = behaviour.settings
            if api.authorised(
                query, self.headers.get("Authorization"), settings.api_key, settings.read_token
            ):
                answer = api.answer(standin.catalogue, path, query)
            else:
                answer = api.error(api.INVALID_API_KEY)
            answer.headers.update(admission.limit_headers)
            self._send_json(answer, damage=fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._drop()  # counts the request as dropped if no answer was sent

    def _drop(self) -> None:
        """Closes the connection without an answer (unless one was sent)."""
        if self._on_answer is not None:
            self._on_answer(None)
            self._on_answer = None
            self.close_connection = True

    # --- the control surface ----------------------------------------------------------------

    def _control(self, method: str, path: str) -> None:
        standin = self.server.standin
        name = path[len(CONTROL_PREFIX) :].rstrip("/")
        if method == "GET" and name == "config":
            self._send_json(api.Answer(200, standin.settings.public()))
        elif method == "GET" and name == "stats":
            self._send_json(api.Answer(200, standin.stats()))
        elif method == "POST" and name == "reset":
            self._drain_body()
            standin.reset()
            self._send_json(api.Answer(200, {"reset": True}))
        elif method == "POST" and name == "config":
            try:
                changes = json.loads(self._drain_body() or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of setting -> value")
                settings = standin.configure(**changes)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                self._send_json(api.Answer(400, {"error": str(exc)}))
            else:
                self._send_json(api.Answer(200, settings.public()))
        else:
            if method == "POST":
                self._drain_body()
            known = "GET config, POST config, GET stats, POST reset"
            self._send_json(api.Answer(404, {"error": f"no {method} {path}; known: {known}"}))

    # --- writing ----------------------------------------------------------------------------

    def _drain_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(
        self, answer: api.Answer, extra: dict[str, str] | None = None, damage: str | None = None
    ) -> None:
        body = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
        if damage == "malformed":
            # Half a JSON document followed by text a JSON parser rejects.
            body = body[: len(body) // 2] + b"\x00<!-- upstream error -->"
        headers = {**answer.headers, **(extra or {})}
        self._send(
            answer.status, body, "application/json;charset=utf-8", headers, damage == "truncated"
        )

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str],
        truncate: bool = False,
    ) -> None:
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, mtime=0)
            headers = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        if self._on_answer is not None:
            self._on_answer(status)
            self._on_answer = None
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.wfile.write(body)


class TmdbStandin:
    """A local TMDB v3 stand-in on a free loopback port.

    Keyword arguments are the settings of behaviour.Settings (api_key, read_token, latency_ms,
    rate_limit, rate_window_s, fault_rate, fault_kinds, hang_s, seed); a bad one raises
    ValueError naming it. start() is idempotent and returns self; stop() blocks until the server
    thread has ended, wakes requests held by latency or a "hang" fault, closes open
    connections, and is safe twice or before start(). Use it as a context manager to do both.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        catalogue: Catalogue | None = None,
        verbose: bool = False,
        **settings: Any,
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else bundled()
        self.behaviour = Behaviour(updated(Settings(), settings))
        self.verbose = verbose
        self.stopping = threading.Event()
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> Self:
        with self._lock:
            if self._server is None:
                self.stopping.clear()
                self._server = _Server(self._address, self)
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="tmdb-standin",
                    daemon=True,
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        self.stopping.set()
        server.shutdown()
        thread.join()
        server.drop_connections()
        server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server's root, e.g. http://127.0.0.1:41234 (control paths hang off it)."""
        if self._server is None:
            raise RuntimeError("the TMDB stand-in is not running: call start() first")
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What TMDB_BASE_URL should be: the root plus /3, as in TMDB's own base URL."""
        return self.url + "/3"

    @property
    def settings(self) -> Settings:
        return self.behaviour.settings

    def configure(self, **changes: Any) -> Settings:
        """Changes settings while running (see behaviour.Behaviour.configure)."""
        return self.behaviour.configure(changes)

    def stats(self) -> dict[str, Any]:
        return self.behaviour.stats()

    def reset(self) -> None:
        self.behaviour.reset()

    def environ(self) -> dict[str, str]:
        """Environment for a TMDB client pointed at this stand-in: TMDB_BASE_URL and whichever
        of TMDB_API_KEY / TMDB_READ_TOKEN the stand-in accepts."""
        env = {"TMDB_BASE_URL": self.base_url}
        settings = self.settings
        if settings.api_key is not None:
            env["TMDB_API_KEY"] = settings.api_key
        if settings.read_token is not None:
            env["TMDB_READ_TOKEN"] = settings.read_token
        return env
