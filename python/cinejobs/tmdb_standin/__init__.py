"""A local stand-in for TMDB's v3 API, serving bundled films and shows over real HTTP.

Tests, benchmarks and `cinejobs demo` (when no TMDB credentials are set) point TMDB clients at it
through TMDB_BASE_URL. It follows TMDB's documented paths, query parameters, response shapes,
status codes and error bodies, and can be told to be slow, to rate-limit with 429 and
Retry-After, and to fail in the ways real services fail. It is not TMDB.

    with TmdbStandin(rate_limit=40, rate_window_s=10) as tmdb:
        os.environ.update(tmdb.environ())   # TMDB_BASE_URL, TMDB_API_KEY, TMDB_READ_TOKEN
        ...

`python -m cinejobs.tmdb_standin` runs one in the foreground.
"""

from __future__ import annotations

from .behaviour import FAULT_KINDS, Settings
from .catalogue import Catalogue, bundled
from .server import TmdbStandin

__all__ = ["FAULT_KINDS", "Catalogue", "Settings", "TmdbStandin", "bundled"]
