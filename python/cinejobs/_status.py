"""A live status line for long-running commands: rewritten in place on a terminal, printed as
plain log lines (only when something changed, at a slower pace) when output is piped."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["StatusLine", "format_counts"]


def format_counts(stats: Mapping[str, Any], rate: float | None) -> str:
    processed = (
        stats.get("succeeded", 0)
        + stats.get("failed", 0)
        + stats.get("retried", 0)
        + stats.get("cancelled", 0)
    )
    parts = [
        f"processed {processed:,}",
        f"succeeded {stats.get('succeeded', 0):,}",
        f"failed {stats.get('failed', 0):,}",
        f"retried {stats.get('retried', 0):,}",
        f"running {stats.get('running', 0):,}",
    ]
    if stats.get("snoozed"):  # held back by a rate limit or an ETA: not processed, not retried
        parts.append(f"snoozed {stats['snoozed']:,}")
    if stats.get("children"):  # process mode: child processes alive, and those replaced
        restarts = sum(dict(stats.get("child_restarts") or {}).values())
        parts.append(
            f"children {stats['children']}" + (f" (replaced {restarts:,})" if restarts else "")
        )
    if rate is not None:
        parts.append(f"{rate:,.1f} jobs/s")
    return " | ".join(parts)


class StatusLine:
    """Shows worker counters (processed, succeeded, failed, retried, running, jobs/s).

    Thread-safe: log records written from other threads through :meth:`interrupted` (the job
    log) and updates from the main thread never interleave on the terminal."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        prefix: str = "",
        tty: bool | None = None,
        plain_interval: float = 10.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.prefix = prefix
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self.tty = tty
        self.plain_interval = plain_interval
        self._width = 0
        self._line = ""  # what the terminal shows now (tty only)
        self._lock = threading.RLock()
        self._last_text = ""
        self._last_plain = 0.0
        self._samples: list[tuple[float, int]] = []

    @staticmethod
    def processed(stats: Mapping[str, Any]) -> int:
        return sum(stats.get(k, 0) for k in ("succeeded", "failed", "retried", "cancelled"))

    def _rate(self, processed: int) -> float:
        now = time.monotonic()
        self._samples.append((now, processed))
        # jobs/s over the last ~5 seconds
        while len(self._samples) > 2 and now - self._samples[0][0] > 5.0:
            self._samples.pop(0)
        t0, p0 = self._samples[0]
        return (processed - p0) / (now - t0) if now > t0 else 0.0

    def update(self, stats: Mapping[str, Any], extra: str = "") -> None:
        with self._lock:
            self._update(stats, extra)

    def _update(self, stats: Mapping[str, Any], extra: str) -> None:
        text = format_counts(stats, self._rate(self.processed(stats)))
        if extra:
            text = f"{text} | {extra}"
        if self.tty:
            line = self.prefix + text
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
            self._line = line
            self.stream.flush()
            return
        now = time.monotonic()
        key = format_counts(stats, None) + extra  # changes in counts, not in the rate
        if key != self._last_text and now - self._last_plain >= self.plain_interval:
            self._last_text = key
            self._last_plain = now
            self.stream.write(self.prefix + text + "\n")
            self.stream.flush()

    def log(self, message: str) -> None:
        """Print a message on its own line (above the status line on a terminal)."""
        with self._lock:
            self._clear()
            self._line = ""
            self.stream.write(message + "\n")
            self.stream.flush()

    @contextmanager
    def interrupted(self) -> Iterator[None]:
        """Clear the status line for what the block writes to the terminal (on another stream,
        such as a log record on stderr), then draw it again below."""
        with self._lock:
            self._clear()
            try:
                yield
            finally:
                if self.tty and self._line:
                    self.stream.write(self._line)
                    self._width = len(self._line)
                    self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def finish(self) -> None:
        """End the in-place line so that what follows starts on a fresh line."""
        with self._lock:
            if self.tty and self._width:
                self.stream.write("\n")
                self._width = 0
                self._line = ""
                self.stream.flush()
