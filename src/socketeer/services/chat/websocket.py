"""A WebSocket member is a line member: text messages in, lines out.  Sans-IO, over wsproto.

:func:`accept` answers a browser's upgrade request (already parsed by the
HTTP connection) with wsproto's handshake and returns the ``101`` response
and a :class:`WebSocketLines`.  From then on:

- each text message the member sends is one line it typed, handed to the
  chat as that line and a newline (a line break inside a message is a
  control character like any other, shown as U+FFFD);
- each line the chat sends is one text message (:class:`LineFrames`
  frames a delivery once for every member that receives it).

Limits, each ending the connection with a close frame whose code says why:
a message over ``max_message`` bytes (1009), a binary message (1003), a
message in more than :data:`MAX_FRAGMENTS` frames (1008), anything
wsproto cannot parse (1002: an unmasked frame, a fragmented control
frame; 1007: text that is not UTF-8).  Pings are answered, only the last
of those that arrive together (RFC 6455 allows it), so a flood of pings
costs one pong per read.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

__all__ = [
    "MAX_FRAGMENTS",
    "HandshakeRefused",
    "LineFrames",
    "Received",
    "WebSocketLines",
    "accept",
    "text_frame",
]

#: Frames one message may arrive in.
MAX_FRAGMENTS = 64
#: Close codes, by what happened.
NORMAL, GOING_AWAY, PROTOCOL_ERROR = 1000, 1001, 1002
UNSUPPORTED, POLICY, TOO_BIG, INTERNAL = 1003, 1008, 1009, 1011
#: Deliveries up to this many bytes have their frames kept for the next member.
CACHED_DELIVERY = 64 * 1024


class HandshakeRefused(Exception):
    """An upgrade request that cannot become a WebSocket: answer ``status`` and close."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


def accept(
    headers: Iterable[tuple[bytes, bytes]], target: bytes, max_message: int
) -> tuple[Request, bytes, WebSocketLines]:
    """Accept an upgrade request: its wsproto view, the ``101`` response, and the member's side.

    Raises :class:`HandshakeRefused` (400, or 426 for another WebSocket
    version) when the request is not a valid upgrade.
    """
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(list(headers), target)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status, extra = 400, []
        if isinstance(hint, RejectConnection):
            status = hint.status_code
            extra = [(bytes(n).decode("latin-1"), bytes(v).decode()) for n, v in hint.headers]
        raise HandshakeRefused(status, f"not a WebSocket upgrade: {exc}", extra) from None
    request = next((e for e in ws.events() if isinstance(e, Request)), None)
    if request is None:
        raise HandshakeRefused(400, "not a WebSocket upgrade")
    response = ws.send(AcceptConnection())  # no extensions: a delivery is framed once for all
    assert ws.connection is not None
    return request, response, WebSocketLines(ws.connection, max_message)


@dataclass
class Received:
    """What some bytes from the member came to."""

    #: Whole lines it sent, each as UTF-8 with its newline.
    lines: list[bytes] = field(default_factory=list)
    #: Bytes to send back (a pong, the closing frame).
    reply: bytes = b""
    #: The WebSocket is over: close the connection once ``reply`` is sent.
    closed: bool = False
    #: Why, for the log (empty when the member closed it politely).
    problem: str = ""


class WebSocketLines:
    """One member's WebSocket after the handshake: bytes in, lines out, close frames."""

    def __init__(self, connection: Connection, max_message: int) -> None:
        self._ws = connection
        self.max_message = max_message
        self._parts: list[str] = []
        self._size = 0
        self._frames = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether a close frame was sent or received: nothing more is to be said."""
        return self._closed

    def receive(self, data: bytes) -> Received:
        """Bytes from the member."""
        out = Received()
        if self._closed:
            return out
        self._ws.receive_data(data)
        ping: Ping | None = None
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                problem = self._text(event, out)
            elif isinstance(event, Ping):
                ping, problem = event, ""
            elif isinstance(event, BytesMessage):
                problem = "binary messages are not chat lines"
                out.reply += self.close(UNSUPPORTED, problem)
            elif isinstance(event, CloseConnection):
                problem = self._closing(event, out)
            else:  # a pong: nothing to do
                problem = ""
            if problem or self._closed:
                out.problem, out.closed = problem, True
                return out
        if ping is not None:
            out.reply += self._ws.send(ping.response())
        return out

    def close(self, code: int = NORMAL, reason: str = "") -> bytes:
        """The closing frame to send (once; empty after that)."""
        if self._closed or self._ws.state not in (
            ConnectionState.OPEN,
            ConnectionState.REMOTE_CLOSING,
        ):
            self._closed = True
            return b""
        self._closed = True
        return self._ws.send(CloseConnection(code=code, reason=reason or None))

    def _text(self, event: TextMessage, out: Received) -> str:
        piece = event.data
        self._size += len(piece.encode("utf-8", "surrogatepass"))
        if self._size > self.max_message:
            problem = f"message over {self.max_message} bytes"
            out.reply += self.close(TOO_BIG, problem)
            return problem
        if event.frame_finished:
            self._frames += 1
            if self._frames > MAX_FRAGMENTS and not event.message_finished:
                problem = f"message in more than {MAX_FRAGMENTS} frames"
                out.reply += self.close(POLICY, problem)
                return problem
        self._parts.append(piece)
        if event.message_finished:
            text = "".join(self._parts).replace("\r", "\ufffd").replace("\n", "\ufffd")
            out.lines.append(text.encode("utf-8", "replace") + b"\n")
            self._parts.clear()
            self._size = self._frames = 0
        return ""

    def _closing(self, event: CloseConnection, out: Received) -> str:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:  # the member closed: answer it
            out.reply += self._ws.send(event.response())
            self._closed = True
            return ""
        # wsproto could not parse what came: it reports that as a close with the code to send.
        problem = event.reason or f"WebSocket protocol error ({event.code})"
        code = event.code if event.code != CloseReason.ABNORMAL_CLOSURE else PROTOCOL_ERROR
        out.reply += self.close(code, problem)
        return problem


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (what a server sends)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class LineFrames:
    """Deliveries (lines, each ending in a newline) as text frames, one per line.

    The chat writes the same bytes to every member of a room, so the frames
    of the last few deliveries are kept: a delivery is framed once, however
    many WebSocket members receive it.
    """

    def __init__(self, keep: int = 16) -> None:
        self._keep = keep
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._last_in: bytes | None = None
        self._last_out = b""

    def __call__(self, data: bytes) -> bytes:
        """The frames for ``data``."""
        if data is self._last_in:
            return self._last_out
        framed = self._cache.get(data)
        if framed is None:
            lines = data.split(b"\n")
            if not lines[-1]:
                lines.pop()
            framed = b"".join(map(text_frame, lines))
            if len(data) <= CACHED_DELIVERY:
                self._cache[data] = framed
                if len(self._cache) > self._keep:
                    self._cache.popitem(last=False)
        self._last_in, self._last_out = data, framed
        return framed
