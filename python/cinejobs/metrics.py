"""Prometheus metrics: ``GET /metrics`` in the text exposition format (version 0.0.4).

The C++ core counts (where jobs run, with no GIL per job) and writes the text; this module only
serves it over HTTP. No ``prometheus_client`` is needed, and the ``cinejobs-worker`` binary's
counters read the same. ``cinejobs worker --metrics-port P`` runs a :class:`MetricsServer` for
its worker; ``jobs_router(app, metrics=True)`` serves the same text from a FastAPI app.

The families (docs/guide.md, "Metrics"): ``cinejobs_jobs_*_total{task,queue}``,
``cinejobs_job_duration_seconds{task}``, ``cinejobs_jobs_running``,
``cinejobs_worker_free_slots``, ``cinejobs_queue_jobs{queue,state}``,
``cinejobs_child_restarts_total{cause}``, ``cinejobs_rate_limit_waits_total{limiter}``,
``cinejobs_tmdb_429_pauses_total`` and ``cinejobs_batcher_*_total{batcher}``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING

from . import _core

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["CONTENT_TYPE", "DEFAULT_HOST", "MetricsServer", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# All interfaces: a worker runs in a container or on another machine than the Prometheus that
# scrapes it, and the text holds counts and task names, nothing to hide from the network the
# worker is on. Pass host="127.0.0.1" (--metrics-host) to keep it to the machine.
DEFAULT_HOST = "0.0.0.0"


def render_metrics(worker: Worker | None = None, *, broker: _core.Broker | None = None) -> str:
    """One scrape: ``worker``'s counters and gauges with the broker's queue depth
    (:meth:`Worker.metrics_text`), or without a worker the process-wide counters and the queue
    depth of ``broker``. A broker that fails leaves the rest (``cinejobs_queue_depth_up 0``)."""
    if worker is not None:
        return worker.metrics_text()
    return _core.render_metrics(None, None, broker)


class MetricsServer:
    """Serves ``GET /metrics`` (``render()``'s text) on ``host:port`` from a daemon thread.

    ``bind`` takes the port (``OSError`` when it is in use), so a caller can fail before it
    starts anything else; ``start`` binds if needed and serves, and calling it again does
    nothing. ``stop`` blocks until the serving thread has ended and frees the port; it is safe
    twice and before ``start``. Port 0 picks a free port (read :attr:`port` after ``bind``).
    Any other path is 404; a ``render`` that raises is a 500 naming the error.
    """

    def __init__(self, render: Callable[[], str], port: int, host: str = DEFAULT_HOST) -> None:
        self._render = render
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The port served: the one given, or the one picked for port 0 once bound."""
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics`` as bound (0.0.0.0: every interface)."""
        return f"http://{self._host}:{self._port}/metrics"

    def bind(self) -> MetricsServer:
        """Take the port now. Raises OSError (EADDRINUSE when another process holds it)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("this MetricsServer was stopped; make a new one")
            if self._server is None:
                server = ThreadingHTTPServer((self._host, self._port), self._handler_class())
                server.daemon_threads = True  # a scrape in flight does not hold up exit
                self._server = server
                self._port = server.server_address[1]
            return self

    def start(self) -> MetricsServer:
        """Serve from a daemon thread (binding first if :meth:`bind` was not called)."""
        self.bind()
        with self._lock:
            if self._thread is None:
                assert self._server is not None
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.2},
                    name="cinejobs-metrics",
                    daemon=True,
                )
                self._thread.start()
            return self

    def stop(self) -> None:
        """Stop serving, wait for the serving thread and free the port."""
        with self._lock:
            self._stopped = True
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        if thread is not None:
            server.shutdown()  # returns once serve_forever has
            thread.join()
        server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        render = self._render

        class Handler(BaseHTTPRequestHandler):
            server_version = "cinejobs-metrics"

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, *, body: bool) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n", body)
                    return
                try:
                    text = render()
                except Exception as exc:  # the scraper sees why; the server keeps serving
                    message = f"rendering the metrics failed: {type(exc).__name__}: {exc}\n"
                    self._send(500, "text/plain; charset=utf-8", message.encode(), body)
                    return
                self._send(200, CONTENT_TYPE, text.encode(), body)

            def _send(self, status: int, content_type: str, payload: bytes, body: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                # One line per scrape (every 15 s, for ever) would drown the job log.
                pass

        return Handler
