"""``python -m cinejobs``: the command-line interface (see ``cinejobs --help``)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
