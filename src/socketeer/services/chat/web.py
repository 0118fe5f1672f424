"""The chat for browsers: the chat page over HTTP and members over WebSocket, on the chat's port.

A :class:`WebChatSession` is a :class:`~.session.ChatSession` that first
finds out who connected (:mod:`.opening`): it holds the greeting until the
first bytes arrive or :data:`~.opening.GREETING_HOLD` seconds pass.  A
line member (nc, telnet, ``socketeer chat``) is then greeted and served
exactly as before.  A connection whose first line is an HTTP request is
served as HTTP (:class:`~socketeer.http.connection.HttpConnection`):

==================================  ============================================
``GET /``                           the chat page
``GET /.socketeer/chat.js`` (etc.)  its script and style
``GET /ws`` (an upgrade)            a WebSocket member (:mod:`.websocket`)
==================================  ============================================

A WebSocket member is a line member whose lines travel as text messages:
it joins the same chat, with the same commands, history and limits.  The
chat's :class:`~.session.Outbox` writes to it through
:class:`WebSocketStream`, which frames each line as one message.  A
browser on another site cannot open the WebSocket: an ``Origin`` that is
not the server's own (scheme, host and port, :mod:`socketeer.http.origins`)
is refused (403).
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from importlib import resources
from typing import BinaryIO

from ...host import Host, Task
from ...http.connection import Exchange, HttpConnection
from ...http.origins import same_origin
from ...http.responses import PAGE_HEADERS, Headers, HttpError, asset, html_response
from ...http.targets import BadTarget, parse_target
from ...stream import ByteStream
from .errands import Errands
from .opening import GREETING_HOLD, Kind, Opening
from .protocol import ChatProtocol
from .session import ChatSession, Logins, Outbox
from .websocket import (
    GOING_AWAY,
    INTERNAL,
    POLICY,
    HandshakeRefused,
    LineFrames,
    WebSocketLines,
    accept,
)

__all__ = ["HEAD_TIMEOUT", "HTTP_IDLE", "WebChatSession", "WebSocketStream"]

log = logging.getLogger("socketeer.server")

#: Seconds a connection may take to finish a first line that may be an HTTP request.
HEAD_TIMEOUT = 10.0
#: Seconds an HTTP connection (not yet a WebSocket) may go without a whole request.
HTTP_IDLE = 15.0
#: The static pages and assets, under this prefix.
ASSET_PREFIX = ".socketeer"
#: Deliveries framed as messages, shared by every WebSocket member in this process.
FRAMES = LineFrames()


class WebSocketStream:
    """A WebSocket member's connection as the chat writes to it: each line one text message."""

    can_sendfile = False
    can_half_close = False

    def __init__(self, stream: ByteStream, lines: WebSocketLines, frames: LineFrames) -> None:
        self._stream = stream
        self._lines = lines
        self._frames = frames
        self.peer = stream.peer
        self.address = stream.address
        self.address_key = stream.address_key
        self.secure = stream.secure
        #: The close code sent when the chat closes the connection.
        self.close_code = 1000
        self.close_reason = ""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._lines.closed:
            self._stream.write(self._frames(data if isinstance(data, bytes) else bytes(data)))

    async def drain(self) -> None:
        await self._stream.drain()

    @property
    def write_buffered(self) -> int:
        return self._stream.write_buffered

    @property
    def closing(self) -> bool:
        return self._stream.closing

    def pause_reading(self) -> None:
        self._stream.pause_reading()

    def resume_reading(self) -> None:
        self._stream.resume_reading()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        raise NotImplementedError("a WebSocket carries chat lines only")

    def half_close(self) -> None:
        self.close()

    def set_send_buffer(self, size: int) -> None:
        self._stream.set_send_buffer(size)

    def cork(self, on: bool) -> None:
        self._stream.cork(on)

    def close(self) -> None:
        """Send the closing frame, then close once what was written has gone."""
        if not self._stream.closing:
            self._stream.write(self._lines.close(self.close_code, self.close_reason))
            self._stream.close()

    def abort(self) -> None:
        self._stream.abort()


class WebChatSession(ChatSession):
    """One connection to the chat: a line member, an HTTP client, or a WebSocket member."""

    def __init__(
        self,
        host: Host,
        chat: ChatProtocol[ChatSession],
        outbox: Outbox,
        logins: Logins | None = None,
        errands: Errands[ChatSession] | None = None,
        frames: LineFrames | None = None,
    ) -> None:
        super().__init__(host, chat, outbox, logins, errands)
        self._frames = frames or FRAMES
        self._opening: Opening | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._http: HttpConnection | None = None
        self._task: Task | None = None
        self._ws: WebSocketLines | None = None
        self._ws_stream: WebSocketStream | None = None
        self._requests = 0  # whole HTTP requests, when the HTTP timer last looked

    @property
    def stream(self) -> ByteStream:
        """The connection; for a WebSocket member, one that sends each line as a message."""
        if self._ws_stream is not None:
            return self._ws_stream
        return super().stream

    # finding out who connected --------------------------------------------------------

    def started(self) -> None:
        self._opening = Opening(self.host.now())
        self._arm(GREETING_HOLD, self.hold_over)

    def hold_over(self) -> None:
        """The greeting's hold may be over (the timer fired): greet a client that said nothing."""
        opening = self._opening
        self._timer = None
        if opening is None or self.closing:
            return
        now = self.host.now()
        kind = opening.waited(now)
        if kind is not None:
            self._become(kind)
        elif now >= opening.deadline + HEAD_TIMEOUT:  # half a first line, for too long
            log.info("%s: no whole first line in %g s", self.peer, HEAD_TIMEOUT)
            super().close()
        else:
            later = opening.deadline - now if now < opening.deadline else HEAD_TIMEOUT
            self._arm(later, self.hold_over)

    def _arm(self, delay: float, callback: object) -> None:
        assert callable(callback)
        self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), callback)

    def _become(self, kind: Kind) -> None:
        opening = self._opening
        assert opening is not None
        self._opening = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        received = opening.received
        if kind is Kind.HTTP:
            self._http = http = HttpConnection(super().stream, self, self)
            http.feed(received)
            self._task = self.host.spawn(self._serve_http(http), f"HTTP for {self.peer}")
            self._arm(HTTP_IDLE, self._http_idle)
            return
        super().started()  # a line member: greet it, then hear what it said
        if received:
            super().data_received(received)

    # bytes in -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws_received(data)
        elif self._http is not None:
            self._http.feed(data)
        elif self._opening is not None:
            kind = self._opening.feed(data)
            if kind is not None:
                self._become(kind)
        else:
            super().data_received(data)

    def eof_received(self) -> bool:
        if self._opening is not None:
            self._become(self._opening.end())
        if self._ws is not None:
            return False  # a WebSocket without its closing frame: gone
        if self._http is not None:
            self._http.feed_eof()
            return not self.stream.secure  # the answer may still be on its way
        return super().eof_received()

    def ended(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().ended(exc)

    # HTTP -----------------------------------------------------------------------------

    async def _serve_http(self, http: HttpConnection) -> None:
        await http.run()

    def _http_idle(self) -> None:
        self._timer = None
        if self._http is None or self.closing:
            return
        if self.messages == self._requests:
            self.abort(f"no request in {HTTP_IDLE:g} s")
            return
        self._requests = self.messages
        self._arm(HTTP_IDLE, self._http_idle)

    async def handle(self, exchange: Exchange) -> None:
        """Answer one HTTP request (the session is the chat's HTTP application)."""
        try:
            target = parse_target(exchange.target)
        except BadTarget as exc:
            raise HttpError(400, str(exc)) from None
        names = target.names
        if names == ("ws",) and not target.directory:
            self._upgrade(exchange)
            return
        if exchange.method not in ("GET", "HEAD"):
            raise HttpError(405, "the chat's pages are only read", [("allow", "GET, HEAD")])
        if not names:
            await html_response(exchange, 200, chat_page(self._chat.settings.max_line_length))
            return
        found = asset(names[1]) if len(names) == 2 and names[0] == ASSET_PREFIX else None
        if found is None:
            raise HttpError(404, "no such page")
        body, content_type = found
        headers = [("content-type", content_type), ("cache-control", "no-cache"), *PAGE_HEADERS]
        await exchange.respond(200, headers, body)

    def _upgrade(self, exchange: Exchange) -> None:
        """``GET /ws``: the connection becomes a WebSocket member of the chat."""
        if not same_site(exchange.headers, exchange.scheme):
            raise HttpError(403, "a WebSocket from another site's page")
        limit = self._chat.settings.max_line_length
        try:
            _, response, lines = accept(exchange.request.headers, exchange.target, limit)
        except HandshakeRefused as exc:
            raise HttpError(exc.status, exc.message, exc.headers) from None
        http = self._http
        assert http is not None
        rest = http.hand_over()
        self._http = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        raw = super().stream
        raw.write(response)
        self._ws = lines
        self._ws_stream = WebSocketStream(raw, lines, self._frames)
        log.info("%s: WebSocket member", self.peer)
        super().started()  # joins the chat: greeted, as a line member would be
        if rest:
            self._ws_received(rest)

    # WebSocket ------------------------------------------------------------------------

    def _ws_received(self, data: bytes) -> None:
        ws = self._ws
        assert ws is not None
        got = ws.receive(data)
        raw = super().stream
        if got.reply:
            raw.write(got.reply)
        if got.lines:
            super().data_received(b"".join(got.lines))
        if got.closed:
            if got.problem:
                log.info("%s: WebSocket closed: %s", self.peer, got.problem)
            raw.close()
        elif raw.write_buffered > self._outbox.max_queue:
            self.drop(f"not reading: more than {self._outbox.max_queue} bytes waiting to be sent")

    # closing --------------------------------------------------------------------------

    def close(self) -> None:
        if self._ws_stream is not None:
            self._ws_stream.close()
        else:
            super().close()

    def abort(self, reason: str) -> None:
        stream = self._ws_stream
        if stream is not None:
            stream.close_code = (
                GOING_AWAY
                if "shutting down" in reason
                else INTERNAL
                if "internal" in reason
                else POLICY
            )
            stream.close_reason = reason
        super().abort(reason)

    def notify_failure(self, reason: str) -> None:
        if self._http is not None:
            self._http.failed(reason)
        else:
            super().notify_failure(reason)


def same_site(headers: Headers, scheme: str) -> bool:
    """Whether a WebSocket request comes from the server's own page (or from no page at all).

    Browsers send ``Origin`` with every WebSocket request; programs need not.
    The page's origin must be the server's as browsers compare them: the
    same scheme (``scheme``: how the server was reached), host and port.
    """
    origin = headers.get("origin")
    return origin is None or same_origin(origin, headers.get("host"), scheme)


@cache
def chat_page(max_line: int) -> str:
    """The chat page, for lines of at most ``max_line`` bytes."""
    page = resources.files("socketeer.http").joinpath("static", "chat.html").read_text("utf-8")
    return page.replace("%MAX_LINE%", str(max_line))
