"""The first protocol of a connection from a load balancer: read its PROXY header, then admit.

With ``--proxy-protocol`` every stream connection starts here instead of
being admitted at once.  :class:`ProxyDoorway` reads the header
(:mod:`socketeer.proxy`) and hands the transport, the client's address it
carries and any bytes that came after it to the server, which only then
decides (allow/deny, limits) and starts a session.  A connection whose first
bytes are not a valid header, that ends before one, or whose header is not
whole within ``timeout`` seconds of connecting is closed with one log line
and nothing sent.  Connections waiting for their header are bounded
(``max_pending``): past that a new one is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from .endpoint import describe_peer
from .proxy import ProxyHeaderError, ProxyHeaderReader

__all__ = ["ProxyDoorway", "feed"]

log = logging.getLogger("socketeer.server")

#: What the doorway calls with the transport, the client's socket address and the bytes after.
Arrived = Callable[[asyncio.Transport, object, bytes], None]
#: What the doorway calls when it closes a connection for a bad or missing header.
Refused = Callable[[str], None]


class ProxyDoorway(asyncio.Protocol):
    """Reads one PROXY header within ``timeout`` seconds, then calls ``arrived``."""

    def __init__(
        self,
        arrived: Arrived,
        refused: Refused,
        pending: set[ProxyDoorway],
        *,
        timeout: float,
        max_pending: int,
    ) -> None:
        self._arrived = arrived
        self._refused = refused
        self._pending = pending
        self._timeout = timeout
        self._max_pending = max_pending
        self._reader = ProxyHeaderReader()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._peer = describe_peer(transport.get_extra_info("peername"))
        if len(self._pending) >= self._max_pending:
            self._close(f"{len(self._pending)} connections already wait for a PROXY header")
            return
        self._pending.add(self)
        self._timer = asyncio.get_running_loop().call_later(
            self._timeout, self._close, f"no whole PROXY header within {self._timeout:g}s"
        )

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        try:
            result = self._reader.feed(data)
        except ProxyHeaderError as exc:
            self._close(str(exc))
            return
        if result is None:
            return
        header, rest = result
        self._done()
        peername = header.source or transport.get_extra_info("peername")
        self._arrived(transport, peername, rest)

    def eof_received(self) -> bool:
        self._close("the connection ended before its PROXY header")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()

    def _done(self) -> None:
        self._pending.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self, reason: str) -> None:
        self._done()
        if self._transport is not None and not self._transport.is_closing():
            log.warning("closing %s: %s", self._peer, reason)
            self._refused(reason)
            self._transport.abort()


def feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Give ``data`` to ``protocol`` as its transport would (a buffered protocol included)."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
            size = min(len(buffer), len(view))
            if size == 0:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
    elif isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
