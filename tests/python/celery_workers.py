"""Real Celery-app workers for the tests and the benchmark: `celery worker` (prefork) and
`cinejobs worker --celery`, as subprocesses running examples/celery_app (or another app) on a
real redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "celery_app"
WORKER_KINDS = ("celery", "cinejobs")


class CeleryAppWorker:
    """One worker process of `kind` consuming `queues` of the Celery app `app_spec`."""

    def __init__(
        self,
        kind: str,
        app_spec: str,
        queues: list[str],
        log: Path,
        *,
        cwd: Path = EXAMPLE_DIR,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        loglevel: str = "INFO",
        extra: tuple[str, ...] = (),
    ) -> None:
        bindir = Path(sys.executable).parent
        if kind == "celery":
            command = [
                sys.executable, "-m", "celery", "-A", app_spec, "worker",
                "-Q", ",".join(queues), "--pool", "prefork", "-c", str(concurrency),
                "-n", f"celery-{uuid.uuid4().hex[:8]}@%h", "--loglevel", loglevel,
                "--without-mingle", "--without-gossip", "--without-heartbeat",
            ]  # fmt: skip
        elif kind == "cinejobs":
            cinejobs = shutil.which("cinejobs", path=str(bindir)) or "cinejobs"
            command = [
                cinejobs, "worker", "--celery", app_spec, "--queues", ",".join(queues),
                "--concurrency", str(concurrency),
            ]  # fmt: skip
        else:
            raise ValueError(f"unknown worker kind {kind!r}: use one of {WORKER_KINDS}")
        command += extra
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(cwd), full_env.get("PYTHONPATH", "")) if p
        )
        self.kind = kind
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the worker dies at once with the messages it holds."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a warm shutdown for both kinds) and wait; SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode
