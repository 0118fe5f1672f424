"""The thin asyncio layer: move bytes between a transport, a codec and a handler.

A :class:`StreamSession` is one connection.  It owns the connection's codec
and handler, and nothing else: a failure in one session closes that session
and no other.  Flow control is end to end: when a client stops reading and
the kernel's send buffer fills, the session stops reading from that client
until it drains, so a slow reader costs bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from .endpoint import describe_peer
from .errors import FrameTooLarge, ProtocolError
from .framing import make_codec
from .service import Handler, Service

if TYPE_CHECKING:
    from .server import Server

__all__ = ["MAX_DATAGRAM", "DatagramSession", "Session", "SessionService", "StreamSession"]

log = logging.getLogger("socketeer.server")

#: The largest UDP payload over IPv4: 65,535 - 8 (UDP header) - 20 (IP header).
MAX_DATAGRAM = 65_507


class Session(asyncio.Protocol):
    """One stream connection as the server sees it: admitted, tracked, closed.

    Subclasses say what the connection does in :meth:`started`,
    :meth:`data_received`, :meth:`eof_received` and :meth:`ended`; this base
    asks the server to admit the connection (a refused client gets
    :meth:`refuse`'s notice), logs it, and keeps the ``active`` mark the
    server's idle sweep reads.  :meth:`abort` is how the server ends a
    session it no longer wants (idle, shutting down); :meth:`kill` is the last
    resort, dropping the connection without a goodbye.
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        #: Set on every read; the server's idle sweep clears it (see Server).
        self.active = True
        self.idle_since = 0.0
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.peer = describe_peer(transport.get_extra_info("peername"))
        refusal = self._server.admit(self)
        if refusal is not None:
            log.warning("refused %s: %s", self.peer, refusal)
            self.refuse(refusal)
            transport.close()
            return
        self._admitted = True
        log.info("connection from %s", self.peer)
        self.started()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._server.release(self)
            reason = f" ({exc})" if exc else ""
            log.info("closed %s%s", self.peer, reason)
            self.ended(exc)

    def started(self) -> None:
        """The connection was admitted; send a greeting or start a task here."""

    def ended(self, exc: Exception | None) -> None:
        """The connection is gone (after :meth:`started`); release what the session holds."""

    def refuse(self, reason: str) -> None:
        """Tell a client the server would not take why, in one line."""
        assert self.transport is not None
        self.transport.write(f"error: {reason}\n".encode())

    def notify_failure(self, reason: str) -> None:
        """Tell the client why the session is being closed (see :meth:`abort`)."""

    def close(self) -> None:
        """End the session once what was already written has been sent."""
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Tell the client why (in its own protocol), then close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info("closing %s: %s", self.peer, reason)
        with contextlib.suppress(ProtocolError):
            self.notify_failure(reason)
        transport.close()

    def kill(self) -> None:
        """Drop the connection now, discarding anything not yet sent."""
        if self.transport is not None:
            self.transport.abort()


class SessionService(Service):
    """A service that runs its own :class:`Session` per connection instead of a Handler.

    For services whose sessions talk to each other (chat) or stream files
    with their own I/O; stream transports only.
    """

    datagrams = False

    @abstractmethod
    def new_session(self, server: Server) -> Session:
        """Return the protocol object for one new connection."""

    def new_handler(self) -> Handler:
        raise TypeError(f"the {self.name} service runs its own sessions, not handlers")


class StreamSession(Session):
    """One TCP or Unix stream connection running one handler."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._handler = server.service.new_handler()
        config = server.config
        self._codec = make_codec(
            config.framing or server.service.default_framing, config.max_message_size
        )

    # asyncio callbacks -------------------------------------------------------------

    def started(self) -> None:
        self._send(self._handler.opened())

    def data_received(self, data: bytes) -> None:
        self.active = True
        try:
            messages = self._codec.feed(data)
        except FrameTooLarge as exc:
            self._handle(exc.messages)
            self.abort(str(exc))
            return
        except ProtocolError as exc:
            self.abort(str(exc))
            return
        self._handle(messages)

    def eof_received(self) -> bool:
        try:
            messages = self._codec.end()
        except ProtocolError as exc:
            self.abort(str(exc))
            return False
        self._handle(messages)
        return False  # asyncio closes the transport once the replies are flushed

    def pause_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # session logic -----------------------------------------------------------------

    def _handle(self, messages: Sequence[bytes]) -> None:
        handler = self._handler
        assert self.transport is not None
        write, encode = self.transport.write, self._codec.encode  # the hot path
        try:
            for message in messages:
                for reply in handler.received(message):
                    write(encode(reply))
                if handler.finished:
                    self.close()
                    return
        except ProtocolError as exc:
            self.abort(str(exc))
        except Exception:
            log.exception("session with %s failed", self.peer)
            self.abort("internal server error")

    def _send(self, replies: Sequence[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        encode = self._codec.encode
        for reply in replies:
            transport.write(encode(reply))

    def notify_failure(self, reason: str) -> None:
        self._send(self._handler.failed(reason))


class DatagramSession(asyncio.DatagramProtocol):
    """A UDP socket: each datagram is one message, answered to its sender."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        handler = self._server.service.new_handler()
        try:
            replies = handler.received(data)
        except Exception:
            log.exception("datagram from %s failed", describe_peer(addr))
            return
        for reply in replies:
            if len(reply) > MAX_DATAGRAM:
                log.warning("reply to %s too large for a datagram; dropped", describe_peer(addr))
                continue
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("datagram error: %s", exc)
