"""``python -m cinejobs.tmdb_standin``: runs the TMDB stand-in in the foreground, printing the
base URL and credentials to give a TMDB client, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .behaviour import FAULT_KINDS
from .server import TmdbStandin


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cinejobs.tmdb_standin",
        description="A local stand-in for TMDB's v3 API (not TMDB: bundled films only).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    p.add_argument("--api-key", default="standin-api-key", help="v3 key to accept")
    p.add_argument("--read-token", default="standin-read-token", help="v4 token to accept")
    p.add_argument("--no-auth", action="store_true", help="accept requests without credentials")
    p.add_argument(
        "--latency-ms", type=float, nargs="+", default=[0.0], metavar="MS",
        help="fixed delay, or LOW HIGH for a uniform range",
    )  # fmt: skip
    p.add_argument("--rate-limit", type=int, default=0, help="requests per window (0: none)")
    p.add_argument("--rate-window", type=float, default=10.0, help="window in seconds")
    p.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests to fail")
    p.add_argument(
        "--fault-kinds", nargs="+", default=["500", "502", "503"], choices=FAULT_KINDS,
        help="faults to draw from",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if len(args.latency_ms) > 2:
        _parser().error("--latency-ms takes one value or two (LOW HIGH)")
    latency = args.latency_ms[0] if len(args.latency_ms) == 1 else tuple(args.latency_ms)
    try:
        standin = TmdbStandin(
            host=args.host,
            port=args.port,
            verbose=not args.quiet,
            api_key=None if args.no_auth else args.api_key,
            read_token=None if args.no_auth else args.read_token,
            latency_ms=latency,
            rate_limit=args.rate_limit,
            rate_window_s=args.rate_window,
            fault_rate=args.fault_rate,
            fault_kinds=args.fault_kinds,
            seed=args.seed,
        )
    except ValueError as exc:
        _parser().error(str(exc))
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with standin:
        print(f"TMDB stand-in (not TMDB) at {standin.base_url}", flush=True)
        for name, value in standin.environ().items():
            print(f"  {name}={value}", flush=True)
        print(f"  control: {standin.url}/__standin__/config, /__standin__/stats", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
