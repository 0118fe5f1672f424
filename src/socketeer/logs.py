"""Logging and announcing the way ``socketeer serve`` does, for programs that use the library.

::

    log_to_stderr()                             # connection from ..., closed ... on stderr
    asyncio.run(serve(server, on_ready=announce))  # listening on 127.0.0.1:9100

Servers log to the ``socketeer`` loggers (``socketeer.server`` for
connections, refusals and shutdown); nothing is printed until logging is
configured, as the standard library intends for libraries.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TextIO

from .endpoint import Endpoint

__all__ = ["announce", "announce_browser", "browser_address", "log_to_stderr", "mark_worker"]

_DATE = "%Y-%m-%d %H:%M:%S"


def _format(prefix: str = "") -> logging.Formatter:
    return logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s", _DATE)


def log_to_stderr(level: int | str = "info") -> None:
    """Log to stderr with timestamps at ``level`` (``"debug"``, ``"info"``, ``"warning"``...).

    Like :func:`logging.basicConfig`, it configures the root logger, and does
    nothing if that already has a handler.
    """
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_format())
    root.addHandler(handler)
    root.setLevel(level)


def mark_worker(number: int) -> None:
    """Start every log line of this process with ``[worker NUMBER]`` (``serve --workers``)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_format(f"[worker {number}] "))


def announce(endpoints: Sequence[Endpoint], stream: TextIO | None = None) -> None:
    """Print ``listening on ENDPOINT`` for each endpoint on ``stream`` (stdout), and flush.

    Made to be ``serve``'s ``on_ready``: the endpoints carry the real ports.
    """
    out = stream or sys.stdout
    for endpoint in endpoints:
        print(f"listening on {endpoint}", file=out)
    out.flush()


def browser_address(endpoint: Endpoint) -> str | None:
    """The ``http://`` (``https://`` for ``tls://``) address a browser opens for a TCP
    endpoint (None for others)."""
    if endpoint.transport != "tcp":
        return None
    host = endpoint.host or "localhost"
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if endpoint.tls else "http"
    return f"{scheme}://{host}:{endpoint.port}/"


def announce_browser(endpoints: Sequence[Endpoint], stream: TextIO | None = None) -> None:
    """``open http://HOST:PORT/ in a browser`` for the first TCP endpoint."""
    out = stream or sys.stdout
    for endpoint in endpoints:
        address = browser_address(endpoint)
        if address is not None:
            print(f"open {address} in a browser", file=out)
            out.flush()
            return
