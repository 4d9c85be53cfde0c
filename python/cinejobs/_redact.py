"""redact: the one function that masks secrets before a URL is shown (log lines, CLI output,
exception messages, web pages). It is the C++ core's ``redact_url``, so the Python layer and
the core's own messages mask exactly the same things."""

from __future__ import annotations

from . import _core

__all__ = ["redact"]


def redact(text: str) -> str:
    """``text`` (a URL, a libpq ``key=value`` connection string, or a message quoting any number
    of them) with every secret replaced by ``***``: the password of ``user:password@`` (the last
    ``@`` before the host ends it, so a password may hold an unescaped ``@``) and the values of
    the parameters ``password``, ``pass``, ``passwd``, ``token``, ``secret``, ``api_key``,
    ``apikey``, ``key``, ``sslpassword`` and ``access_token`` (any case). Scheme, user, host,
    port, database and other parameters stay readable; text without secrets is unchanged."""
    return _core.redact_url(text)
