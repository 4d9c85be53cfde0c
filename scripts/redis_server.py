#!/usr/bin/env python3
"""A real redis-server for tests and benchmarks: started on a free loopback port in a
temporary directory, durable the way cinejobs promises (``appendonly yes``, ``appendfsync
always``, no RDB snapshots), and stopped with SIGTERM.

Used by the pytest fixtures (tests/python/conftest.py), the Redis fault tests and
bench/bench_redis.py. ``restart()`` brings the server back on the same port and directory, so
that what was acknowledged before (the append-only file) is loaded again.

As a command it runs one server in the foreground until Ctrl-C::

    .venv/bin/python scripts/redis_server.py [--port N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "free_port", "resp_command"]

HOST = "127.0.0.1"


class RedisServerError(RuntimeError):
    """redis-server is missing, would not start, or would not stop."""


def find_redis_server() -> str | None:
    """The path of redis-server (PATH, then Debian's /usr/bin and /usr/sbin), or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the caller may lose a race
    for it; RedisServer.start() then tries another)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when a Redis server at host:port answers PING with PONG (not while it is still
    loading its append-only file, when it answers -LOADING)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply.startswith(b"+PONG")
    except OSError:
        return False


RespValue = None | int | bytes | list["RespValue"]


def _read_reply(stream: BinaryIO) -> RespValue:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise RedisServerError("redis-server closed the connection")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisServerError(
            f"redis-server replied with an error: {body.decode(errors='replace')}"
        )
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise RedisServerError(f"unexpected reply from redis-server: {line!r}")


def resp_command(
    port: int,
    *args: str | bytes | int,
    host: str = HOST,
    password: str | None = None,
    db: int = 0,
) -> RespValue:
    """Send one command (to ``db``) over a new connection and return its reply (bytes, int,
    None or a list of them); an error reply raises RedisServerError. A few lines of RESP, so
    the tests need no Redis client library."""

    def encode(parts: tuple[str | bytes | int, ...]) -> bytes:
        out = [b"*%d\r\n" % len(parts)]
        for part in parts:
            data = part if isinstance(part, bytes) else str(part).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    with socket.create_connection((host, port), timeout=10) as sock, sock.makefile("rb") as stream:
        if password:
            sock.sendall(encode(("AUTH", password)))
            _read_reply(stream)
        if db:
            sock.sendall(encode(("SELECT", db)))
            _read_reply(stream)
        sock.sendall(encode(args))
        return _read_reply(stream)


def _text(value: RespValue) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisServer:
    """One redis-server process on 127.0.0.1.

    ``directory``: where the append-only files, the log and the Unix socket go (a new temporary
    directory, removed by :meth:`close`, when None). ``port``: fixed, or a free one chosen at
    the first start and kept for every restart. Use it as a context manager, or call
    :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        port: int | None = None,
        *,
        password: str | None = None,
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        exe = executable or find_redis_server()
        if exe is None:
            raise RedisServerError(
                "redis-server not found: install Debian's redis-server package "
                "(scripts/install-deps.sh does)"
            )
        self.executable = exe
        self._own_dir = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="cinejobs-redis-"))
            if directory is None
            else Path(directory)
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port if port is not None else 0
        self.password = password
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        # A Unix socket path is limited to 107 bytes; a deep directory gets one in /tmp.
        sock = self.directory / "redis.sock"
        if len(str(sock)) > 100:
            sock = Path(tempfile.gettempdir()) / f"cinejobs-redis-{uuid.uuid4().hex[:12]}.sock"
        self.socket_path = sock

    # ---- addresses ----

    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> str:
        """host:port, as error messages name it."""
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def url(self, db: int = 0, **query: str | int) -> str:
        """A cinejobs broker URL for this server: ``redis://[:password@]127.0.0.1:PORT/DB``
        with ``query`` (e.g. ``prefix="test-1:"``, ``timeout_ms=500``) appended."""
        auth = f":{self.password}@" if self.password else ""
        url = f"redis://{auth}{HOST}:{self.port}/{db}"
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return url

    def unix_url(self, db: int = 0, **query: str | int) -> str:
        """``unix:///path/redis.sock?db=N[&password=...]`` (and ``query``) for this server."""
        params: dict[str, str | int] = {"db": db, **query}
        if self.password:
            params["password"] = self.password
        return f"unix://{self.socket_path}?" + "&".join(f"{k}={v}" for k, v in params.items())

    # ---- life cycle ----

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _command(self) -> list[str]:
        cmd = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        cmd += list(self.extra_args)
        return cmd

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start the server and return once it answers PING. A free port is chosen at the first
        start (another if that one was taken meanwhile); later starts reuse it. Raises
        RedisServerError when it does not come up within ``timeout`` seconds."""
        if self.running:
            return self
        tries = 1 if self._fixed_port or self.port else 5
        for attempt in range(tries):
            if not self._fixed_port and (attempt or not self.port):
                self.port = free_port()
            try:
                self._start_once(timeout)
                return self
            except RedisServerError:
                if attempt == tries - 1 or "in use" not in self._log_tail():
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> None:
        self.proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
            start_new_session=True,  # a Ctrl-C meant for the tests does not reach it
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RedisServerError(
                    f"redis-server on {self.address} exited with status {code} at start; "
                    f"its log ({self.log_path}) ends:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RedisServerError(
                    f"redis-server on {self.address} did not answer PING within {timeout:g} s; "
                    f"its log ends:\n{self._log_tail()}"
                )
            time.sleep(0.01)

    def _answers(self) -> bool:
        if not self.password:
            return ping(self.port)
        try:
            return resp_command(self.port, "PING", password=self.password) == b"PONG"
        except (OSError, RedisServerError):
            return False

    def command(self, *args: str | bytes | int, db: int = 0) -> RespValue:
        """Run one Redis command on this server (see resp_command)."""
        return resp_command(self.port, *args, password=self.password, db=db)

    def scan(self, pattern: str = "*", db: int = 0) -> list[str]:
        """Every key matching ``pattern`` in ``db``, sorted, found by SCAN (never KEYS)."""
        found: list[str] = []
        cursor: RespValue = b"0"
        while True:
            reply = self.command("SCAN", _text(cursor), "MATCH", pattern, "COUNT", 1000, db=db)
            assert isinstance(reply, list) and isinstance(reply[1], list)
            cursor = reply[0]
            found += [k.decode() for k in reply[1] if isinstance(k, bytes)]
            if cursor == b"0":
                return sorted(found)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Redis fsyncs its append-only file and exits) and wait; SIGKILL past
        ``timeout``. Returns the exit status, or None when it was not running."""
        proc = self.proc
        if proc is None:
            return None
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RedisServerError(
                    f"redis-server on {self.address} ignored SIGTERM for {timeout:g} s; killed"
                ) from None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: the server dies at once (what appendfsync always promised survives)."""
        proc = self.proc
        self.proc = None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 15.0) -> RedisServer:
        """Stop (SIGTERM) and start again on the same port and directory."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove the directory it was given, if it made it."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.address} {state} dir={self.directory}>"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a test redis-server in the foreground.")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    options = parser.parse_args()
    with RedisServer(options.dir, options.port) as server:
        print(f"redis-server running: {server.url()}  (unix: {server.unix_url()}); Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            assert server.proc is not None
            server.proc.wait()


if __name__ == "__main__":
    main()
