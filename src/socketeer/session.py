"""Sessions: one connection each, admitted and owned by a host (the server).

A :class:`Session` is the asyncio protocol of one stream connection.  The
server decides whether to take a connection before any session exists
(:meth:`~socketeer.server.Server.verify_request`), then asks the service
for one with ``service.new_session(host)`` and hands it the transport.  The
session sees only its :class:`~socketeer.host.Host` (limits, clock, logger,
tasks, release) and its :class:`~socketeer.stream.ByteStream`, so it is
tested without a server or a socket.

:class:`StreamSession` runs a sans-IO :class:`~socketeer.service.Handler`
through a codec: the layer below the classic services (greet, echo).  Flow
control is end to end: when a client stops reading and the kernel's send
buffer fills, the session stops reading from that client until it drains,
so a slow reader costs bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from .errors import FrameTooLarge, ProtocolError
from .framing import Codec, make_codec
from .host import Host
from .idle import Activity
from .service import Handler, Service
from .stream import ByteStream, TransportStream
from .visible import visible

__all__ = ["Session", "StreamSession", "handler_session"]


class Session(Activity, asyncio.Protocol):
    """One stream connection as its host sees it: started, tracked, closed.

    Subclasses say what the connection does in :meth:`started`,
    :meth:`data_received`, :meth:`eof_received` and :meth:`ended`, and bump
    ``messages`` (whole messages received) and ``transferred`` (bytes of a
    transfer in progress) so that the host knows they are not idle.
    :meth:`abort` is how the host ends a session it no longer wants (idle,
    shutting down); :meth:`kill` is the last resort, dropping the
    connection without a goodbye.
    """

    def __init__(self, host: Host) -> None:
        super().__init__(host.now())
        self.host = host
        self.peer = "?"
        self._stream: TransportStream | None = None

    @property
    def stream(self) -> ByteStream:
        """The connection (only once the session has started)."""
        assert self._stream is not None, "the session has not started"
        return self._stream

    def connection_made(self, transport: asyncio.BaseTransport, peername: object = None) -> None:
        """Start on ``transport``; ``peername`` (None: the transport's) is who the client is."""
        self._stream = stream = TransportStream(transport, peername)
        self.peer = stream.peer
        self.started()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None:
            self._stream.writing_resumed(exc)  # a writer waiting to drain finds it gone
        self.host.release(self)
        self.host.log.info("closed %s%s", self.peer, f" ({exc})" if exc else "")
        self.ended(exc)

    def pause_writing(self) -> None:
        if self._stream is not None:
            self._stream.writing_paused()

    def resume_writing(self) -> None:
        if self._stream is not None:
            self._stream.writing_resumed()

    def started(self) -> None:
        """The connection was admitted; send a greeting or start a task here."""

    def ended(self, exc: Exception | None) -> None:
        """The connection is gone (after :meth:`started`); release what the session holds."""

    def notify_failure(self, reason: str) -> None:
        """Tell the client why the session is being closed (see :meth:`abort`)."""

    @property
    def closing(self) -> bool:
        """Whether the connection is closed or closing (or never opened)."""
        return self._stream is None or self._stream.closing

    def close(self) -> None:
        """End the session once what was already written has been sent."""
        if self._stream is not None:
            self._stream.close()

    def abort(self, reason: str) -> None:
        """Tell the client why (in its own protocol), then close."""
        if self.closing:
            return
        self.host.log.info("closing %s: %s", self.peer, visible(reason))
        with contextlib.suppress(ProtocolError):
            self.notify_failure(reason)
        self.close()

    def kill(self) -> None:
        """Drop the connection now, discarding anything not yet sent."""
        if self._stream is not None:
            self._stream.abort()


class StreamSession(Session):
    """One TCP or Unix stream connection running one handler."""

    def __init__(self, host: Host, handler: Handler, codec: Codec) -> None:
        super().__init__(host)
        self._handler = handler
        self._codec = codec

    # asyncio callbacks -------------------------------------------------------------

    def started(self) -> None:
        stream = self._stream
        assert stream is not None
        self._write = stream.write  # the hot path: the transport's own methods
        self._closing = stream.transport.is_closing
        self._send(self._handler.opened())

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._codec.feed(data)
        except FrameTooLarge as exc:
            self._handle(exc.messages)
            self.abort(str(exc))
            return
        except ProtocolError as exc:
            self.abort(str(exc))
            return
        if messages:
            self.messages += len(messages)
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
        super().pause_writing()
        if not self.closing:
            self.stream.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.closing:
            self.stream.resume_reading()

    # session logic -----------------------------------------------------------------

    def _handle(self, messages: Sequence[bytes]) -> None:
        handler = self._handler
        write, encode = self._write, self._codec.encode
        closing = self._closing
        many = len(messages) > 1  # (one message a read is the common case: no check)
        try:
            for message in messages:
                for reply in handler.received(message):
                    write(encode(reply))
                if handler.finished:
                    self.close()
                    return
                if many and closing():  # broken: every further write would log a warning
                    return
        except ProtocolError as exc:
            self.abort(str(exc))
        except Exception:
            self.host.log.exception("session with %s failed", self.peer)
            self.abort("internal server error")

    def _send(self, replies: Sequence[bytes]) -> None:
        write, encode = self._write, self._codec.encode
        for reply in replies:
            write(encode(reply))

    def notify_failure(self, reason: str) -> None:
        self._send(self._handler.failed(visible(reason)))


def handler_session(host: Host, service: Service) -> StreamSession:
    """A session running a new handler of ``service``, framed as ``host.limits`` say."""
    limits = host.limits
    codec = make_codec(limits.framing or service.default_framing, limits.max_message_size)
    return StreamSession(host, service.new_handler(), codec)
