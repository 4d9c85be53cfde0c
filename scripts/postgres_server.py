#!/usr/bin/env python3
"""A real PostgreSQL server for tests and benchmarks: a fresh cluster (initdb) in a temporary
directory, started with pg_ctl on a free loopback port, stopped and removed afterwards.

PostgreSQL refuses to run as root; when the tests run as root (CI does), the cluster belongs to
Debian's ``postgres`` user and initdb/pg_ctl run through ``runuser``. The superuser
``postgres`` logs in without a password over loopback; other roles need theirs, so tests can
show that a wrong password is refused.

As a command it runs one server until Ctrl-C::

    .venv/bin/python scripts/postgres_server.py
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresServer", "PostgresServerError", "find_postgres_bindir"]

HOST = "127.0.0.1"


class PostgresServerError(RuntimeError):
    """PostgreSQL is missing, would not start, or would not stop."""


def find_postgres_bindir() -> str | None:
    """The directory of initdb and pg_ctl: $CINEJOBS_PG_BINDIR, else the newest
    /usr/lib/postgresql/*/bin, or None."""
    wanted = os.environ.get("CINEJOBS_PG_BINDIR")
    candidates = (
        [wanted]
        if wanted
        else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[
            ::-1
        ]
    )
    for bindir in candidates:
        if (Path(bindir) / "initdb").exists() and (Path(bindir) / "pg_ctl").exists():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway cluster; use as a context manager, or start() / stop()."""

    def __init__(self, durable: bool = False, *, password: str | None = None) -> None:
        """``durable`` keeps PostgreSQL's fsync and full-page writes on, as a production server
        has them (benchmarks); tests turn them off, since a process crash loses nothing
        without them, only a machine crash would. ``password``: put in the superuser's URLs
        (the server trusts its loopback logins, so libpq never sends it): the tests that look
        for secrets in every message use it."""
        self.durable = durable
        self.password = password
        bindir = find_postgres_bindir()
        if bindir is None:
            raise PostgresServerError(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run "
                "scripts/install-deps.sh"
            )
        self.bindir = bindir
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="cinejobs-pg-"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        auth = f"{user}:{self.password}" if self.password and user == "postgres" else user
        return f"postgresql://{auth}@{HOST}:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )

    def _log_tail(self) -> str:
        log = self.dir / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def _options(self) -> str:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        return options

    def start(self) -> PostgresServer:
        done = self._run(
            f"{self.bindir}/initdb",
            "-N",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        if done.returncode != 0:
            raise PostgresServerError(f"initdb failed: {done.stderr[-2000:]}")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all postgres {HOST}/32 trust\n"
            f"host all all {HOST}/32 scram-sha-256\n"
        )
        for attempt in range(4):
            self.port = _free_port()
            if self._pg_ctl_start():
                return self
            if attempt == 3:
                raise PostgresServerError(f"pg_ctl start failed: {self._log_tail()}")
        return self

    def _pg_ctl_start(self) -> bool:
        done = self._run(
            f"{self.bindir}/pg_ctl",
            "-D",
            str(self.data),
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.dir / "server.log"),
            "start",
        )
        return done.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (restart() brings it back)."""
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start_again()

    def start_again(self) -> None:
        """Start a stopped server again on the same port with the same data."""
        deadline = time.monotonic() + 30
        while not self._pg_ctl_start():
            if time.monotonic() > deadline:
                raise PostgresServerError(f"restart failed: {self._log_tail()}")
            time.sleep(0.2)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL through psql as the superuser; return its unaligned output."""
        done = self._run(
            f"{self.bindir}/psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.url(database),
            "-c",
            statement,
        )
        if done.returncode != 0:
            raise PostgresServerError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    with PostgresServer() as server:
        print(server.url(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
