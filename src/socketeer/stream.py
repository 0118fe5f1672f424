"""One byte-stream interface that every stream transport implements.

A session talks to its connection only through a :class:`ByteStream`:
write (with flow control), pause and resume reading, ``sendfile`` where the
transport can, half-close where it can, close, and the peer's address.
Bytes arrive the asyncio way, through the session's protocol callbacks
(``data_received``, or ``get_buffer``/``buffer_updated`` to receive into
the session's own buffers).  :class:`TransportStream` is the stream over
an asyncio transport: TCP, Unix, and TLS (asyncio's TLS transport).

**End of stream.**  TCP and Unix streams half-close: :meth:`half_close`
sends FIN and the peer may keep sending.  TLS cannot (a ``close_notify``
ends both directions), so over TLS ``can_half_close`` is false and the end
of a stream is the end of the connection: a session that would half-close
closes once what it wrote has been sent.  asyncio closes a TLS connection
at the peer's end of stream whatever ``eof_received`` returns (and warns if
it returned True), so sessions return True, keeping a connection open, only
where the stream is not ``secure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import BinaryIO, Protocol, cast

from .addresses import address_key
from .endpoint import describe_peer
from .errors import ConnectionClosed
from .tcp_options import set_cork, set_nodelay

__all__ = ["ByteStream", "TransportStream", "peer_address"]


class ByteStream(Protocol):
    """What a session may do with its connection."""

    #: The peer as people read it (``127.0.0.1:5000``, ``[::1]:5000``, ``unix``).
    peer: str
    #: The peer's IP address, or None where there is none (Unix sockets).
    address: str | None
    #: Who the peer counts as for per-address limits (:func:`~socketeer.addresses.address_key`).
    address_key: str
    #: Whether :meth:`sendfile` can send from the page cache without copying.
    can_sendfile: bool
    #: Whether :meth:`half_close` is possible (not over TLS).
    can_half_close: bool
    #: Whether the connection is encrypted (TLS).
    secure: bool

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; never blocks.  Await :meth:`drain` to respect flow control."""
        ...

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what was written; raise if it is gone."""
        ...

    @property
    def write_buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        ...

    @property
    def closing(self) -> bool:
        """Whether the stream is closed or closing."""
        ...

    def pause_reading(self) -> None:
        """Stop taking bytes from the peer (the kernel's window then stops it)."""
        ...

    def resume_reading(self) -> None:
        """Take bytes from the peer again."""
        ...

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` (NotImplementedError: cannot here)."""
        ...

    def half_close(self) -> None:
        """Send end-of-stream and keep receiving (only where ``can_half_close``)."""
        ...

    def set_send_buffer(self, size: int) -> None:
        """Fix the kernel's send buffer for this connection (where the transport has one)."""
        ...

    def cork(self, on: bool) -> None:
        """Hold what is written until ``cork(False)``, to send a header and its body together.

        Only where the transport is a TCP socket (``TCP_CORK``); elsewhere nothing happens.
        """
        ...

    def close(self) -> None:
        """Close once what was written has been sent."""
        ...

    def abort(self) -> None:
        """Drop the connection now, discarding what was not yet sent."""
        ...


def peer_address(peername: object) -> str | None:
    """The IP address in a socket's peer name, or None (Unix sockets, unknown)."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None


class TransportStream:
    """A :class:`ByteStream` over an asyncio transport.

    The session that owns the transport forwards its ``pause_writing`` and
    ``resume_writing`` callbacks here (the base :class:`~socketeer.session.Session`
    does), which is what :meth:`drain` waits on.
    """

    def __init__(self, transport: asyncio.BaseTransport, peername: object = None) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        if peername is None:  # else the client a load balancer relays (PROXY protocol)
            peername = transport.get_extra_info("peername")
        self.peer = describe_peer(peername)
        self.address = peer_address(peername)
        self.address_key = address_key(peername)
        self.secure = transport.get_extra_info("sslcontext") is not None
        self.can_half_close = transport.can_write_eof()
        self.can_sendfile = self.can_half_close  # TLS transports copy through the loop
        self.write = transport.write  # the hot path: the transport's own method
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self._paused = False
        #: The task in a sendfile, if one is; and how to end the connection once it is out.
        self._sending: asyncio.Task[object] | None = None
        self._ending: Callable[[], None] | None = None
        self._drained: asyncio.Future[None] | None = None
        # Replies must not wait for the client's delayed ACK (asyncio sets this only
        # on sockets whose proto is given, which a server's listening socket is not).
        self._sock: socket.socket | None = transport.get_extra_info("socket")
        set_nodelay(self._sock)

    # flow control, from the session's protocol callbacks ----------------------------

    def writing_paused(self) -> None:
        """The transport's buffer is over its high-water mark."""
        self._paused = True

    def writing_resumed(self, exc: Exception | None = None) -> None:
        """The buffer drained (or the connection went: then ``exc`` may say why)."""
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        """Wait while the transport's buffer is over its high-water mark; raise once it closes."""
        if self._paused and not self.transport.is_closing():
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)
        if self.transport.is_closing():
            raise ConnectionClosed(f"connection to {self.peer} closed")

    @property
    def write_buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    @property
    def closing(self) -> bool:
        return self._ending is not None or self.transport.is_closing()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        if not self.can_sendfile:
            raise NotImplementedError("this transport cannot send from the page cache")
        loop = asyncio.get_running_loop()
        await self._emptied()
        self._sending = asyncio.current_task()
        try:
            return await loop.sendfile(self.transport, file, offset, count)
        finally:
            self._sending = None
            ending, self._ending = self._ending, None
            if ending is not None:
                ending()

    async def _emptied(self) -> None:
        """Wait until everything written has gone, so that asyncio's sendfile need not.

        (Cancelled while it waits for that, asyncio's sendfile leaves the transport
        in a state its close then trips over.)
        """
        transport = self.transport
        if not transport.get_write_buffer_size():
            return
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0, low=0)  # paused until it is empty
        try:
            await self.drain()
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits(high=high, low=low)

    def _end(self, how: Callable[[], None]) -> None:
        """Close (``how``) now, or, in the middle of a sendfile, once it has stopped.

        asyncio (3.11) closing a transport under a sendfile fails its own bookkeeping
        (an ``InvalidStateError`` logged with a traceback): the sendfile is cancelled
        first, and the transport closed as it ends.
        """
        sending = self._sending
        if sending is None or sending.done():
            how()
            return
        if self._ending is None or how == self.transport.abort:
            self._ending = how
        sending.cancel()

    def half_close(self) -> None:
        if self.can_half_close and not self.transport.is_closing():
            self.transport.write_eof()

    def set_send_buffer(self, size: int) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def cork(self, on: bool) -> None:
        set_cork(self._sock, on)

    def close(self) -> None:
        self._end(self.transport.close)

    def abort(self) -> None:
        self._end(self.transport.abort)
