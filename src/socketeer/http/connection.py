"""One HTTP/1.1 connection: the sans-IO ``h11`` driven over a session's byte stream.

The session that found the request line feeds what it receives into
:meth:`HttpConnection.feed`; :meth:`HttpConnection.run` (in the session's
task) parses requests with h11 and hands each to the application as an
:class:`Exchange`, one at a time, keeping the connection alive between
them.  Limits: a request head over ``max_header_size`` bytes gets 431,
anything h11 cannot parse 400; a body the application did not read is
drained up to :data:`DISCARD_LIMIT` bytes, past that the connection closes.
Slow heads are the idle sweep's: a request counts as a message only once
its head is complete.  Reading pauses while more than :data:`INBOX_HIGH`
bytes of a request body wait for the application (an upload on a slow
disk), and while more than :data:`HEADS_HIGH` bytes of requests wait
behind the one being answered (a client that sends requests and never
reads the answers holds no more of the server's memory than that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import BinaryIO, Protocol

import h11

from ..errors import ConnectionClosed
from ..idle import Activity
from ..services.files.buffers import BufferPool
from ..stream import ByteStream
from .rawbody import RawBody
from .responses import Headers, HttpError, error_response, reason

__all__ = ["DISCARD_LIMIT", "MAX_HEADER_SIZE", "Exchange", "HttpApp", "HttpConnection"]

log = logging.getLogger("socketeer.server")

#: Bytes a request's head (request line and headers) may take.
MAX_HEADER_SIZE = 16 * 1024
#: Received bytes waiting for the application before reading pauses, and resumes.
INBOX_HIGH, INBOX_LOW = 4 * 1024 * 1024, 1024 * 1024
#: Received bytes of requests not yet being answered (pipelined) before reading pauses.
HEADS_HIGH = 32 * 1024
#: Unread body bytes drained to keep a connection alive; past this it closes.
DISCARD_LIMIT = 1024 * 1024
#: Seconds a closing connection keeps draining a body the client still sends.
LINGER = 2.0
#: Bytes per sendfile call at first, and at most (progress is counted between calls).
SEND_SLICE, MAX_SEND_SLICE = 1024 * 1024, 64 * 1024 * 1024
#: A sendfile call quicker than this doubles the next one's size; slower than
#: :data:`SLICE_SLOW` halves it: each call costs the same whatever its size.
SLICE_QUICK, SLICE_SLOW = 0.05, 0.5
#: Body bytes handed to the application at a time by :meth:`Exchange.receive_body`.
BODY_BATCH = 2 * 1024 * 1024
#: A partly filled body buffer is handed on once the client has paused this long.
STALL = 0.05


class HttpApp(Protocol):
    """What serves the requests: a files share, a chat."""

    async def handle(self, exchange: Exchange) -> None:
        """Answer one request (the connection turns what escapes into an error response)."""
        ...


class _Region:
    """Stands for ``length`` bytes sent with sendfile, so h11 can count them."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class Exchange:
    """One request and its response."""

    def __init__(self, connection: HttpConnection, request: h11.Request) -> None:
        self._connection = connection
        self._h11 = connection.h11
        self._stream = connection.stream
        self.request = request
        self.method = request.method.decode("ascii")
        self.target = bytes(request.target)
        self.headers = Headers(request.headers)
        self.head = self.method == "HEAD"
        #: The response's status, once it is started.
        self.status: int | None = None
        self.finished = False
        #: Whether the request's body has been read to its end.
        self.body_done = False

    @property
    def peer(self) -> str:
        """The client, as people read it."""
        return self._stream.peer

    @property
    def address_key(self) -> str:
        """Who the client counts as for failed logins."""
        return self._stream.address_key

    @property
    def scheme(self) -> str:
        """``https`` over TLS, else ``http``: what the client's ``Origin`` starts with."""
        return "https" if self._stream.secure else "http"

    @property
    def started(self) -> bool:
        """Whether the response has begun (its status can no longer change)."""
        return self.status is not None

    def add_transferred(self, count: int) -> None:
        """``count`` more bytes of a transfer moved (the idle sweep sees progress)."""
        self._connection.activity.transferred += count

    # the request body ---------------------------------------------------------------

    async def chunks(self, *, raw: bool = False) -> AsyncIterator[bytes]:
        """The request body, piece by piece as it arrives.

        ``raw``: stop once h11 has given what it holds of a body of known
        length, and receive the rest past h11 (:meth:`receive_body`).
        """
        if self.body_done:
            return
        conn = self._h11
        if conn.they_are_waiting_for_100_continue:
            self._stream.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        length = self.headers.get("content-length")
        rest = int(length) if raw and length is not None and length.isdigit() else None
        if "transfer-encoding" in self.headers:
            rest = None
        while True:
            if rest is None:
                event = await self._connection.next_event()
            else:  # what h11 holds, then the rest past it
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    self._connection.start_raw(rest)
                    return
            if isinstance(event, h11.Data):
                self._connection.activity.transferred += len(event.data)
                if rest is not None:
                    rest -= len(event.data)
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.body_done = True
                return
            else:
                raise HttpError(400, "the request ended in the middle of its body")

    async def body(self, limit: int) -> bytes:
        """The whole request body; 413 if it is over ``limit`` bytes."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"request body over {limit} bytes")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def receive_body(
        self,
        write: Callable[[list[bytes | memoryview]], Awaitable[None]],
        limit: int | None = None,
    ) -> int:
        """Hand the whole body to ``write`` in batches; the bytes received.

        413 past ``limit`` bytes.  A body of known length goes past h11,
        into the connection's pooled buffers where it has them; each batch
        is only valid until ``write`` returns.
        """
        declared = self.headers.get("content-length") or ""
        if limit is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"more bytes than the upload's size ({limit} left)")
        received = 0
        batch: list[bytes | memoryview] = []
        batched = 0
        async for chunk in self.chunks(raw=True):
            received += len(chunk)
            if limit is not None and received > limit:
                raise HttpError(413, f"more bytes than the upload's size ({limit} left)")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BODY_BATCH:
                await write(batch)
                batch, batched = [], 0
        if batch:
            await write(batch)
        raw = self._connection.raw
        if raw is not None:  # the rest of a body of declared length: no more than declared
            received += await self._receive_raw(raw, write)
        return received

    async def _receive_raw(
        self,
        raw: RawBody,
        write: Callable[[list[bytes | memoryview]], Awaitable[None]],
    ) -> int:
        connection = self._connection
        received = 0
        writing: asyncio.Future[None] | None = None
        try:
            while True:
                taken = raw.take(BODY_BATCH)
                if taken:
                    received += sum(len(chunk) for chunk in taken)
                    # Shielded: the buffers are the pool's until the write is over.
                    writing = asyncio.ensure_future(write(taken))
                    await asyncio.shield(writing)
                    writing = None
                    raw.release(taken)
                    connection.raw_taken()
                elif raw.done:
                    break
                elif connection.eof:
                    raise HttpError(400, "the request ended in the middle of its body")
                else:
                    await connection.wait_raw()
        finally:
            if writing is not None:
                with contextlib.suppress(BaseException):
                    await writing
            connection.end_raw()
        self.body_done = True
        return received

    # the response -------------------------------------------------------------------

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Send the status line and headers."""
        if self.started:
            raise RuntimeError("the response has already started")
        self.status = status
        fields = list(headers)
        if not self.body_done:
            # The client is still sending a body nobody read: end with this answer.
            fields.append(("connection", "close"))
        self._stream.write(
            self._h11.send(h11.Response(status_code=status, headers=fields, reason=reason(status)))
        )

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send part of the body (nothing for HEAD), respecting flow control."""
        if self.head or not data:
            return
        self._stream.write(self._h11.send(h11.Data(data=bytes(data))))
        await self._drain()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` (zero-copy where possible)."""
        if self.head or not count:
            return 0
        self._h11.send_with_data_passthrough(h11.Data(data=_Region(count)))  # type: ignore[arg-type]
        stream, activity = self._stream, self._connection.activity
        clock = asyncio.get_running_loop().time
        sent, piece = 0, SEND_SLICE
        while sent < count:
            want = min(piece, count - sent)
            started = clock()
            try:
                done = await stream.sendfile(file, offset + sent, want)
            except NotImplementedError:  # uvloop, TLS: copy through the loop instead
                want = min(want, SEND_SLICE)
                done = await self._copy(file, offset + sent, want)
            activity.transferred += done
            sent += done
            if done < want:
                break
            took = clock() - started
            if took < SLICE_QUICK:
                piece = min(piece * 2, MAX_SEND_SLICE)
            elif took > SLICE_SLOW:
                piece = max(piece // 2, SEND_SLICE)
        if sent < count:  # the file shrank: the framing cannot hold
            raise ConnectionResetError("the file shrank while it was being sent")
        return sent

    async def _copy(self, file: BinaryIO, offset: int, count: int) -> int:
        data = await asyncio.to_thread(os.pread, file.fileno(), count, offset)
        self._stream.write(data)
        await self._drain()
        return len(data)

    async def end(self) -> None:
        """Finish the response."""
        self._stream.write(self._h11.send(h11.EndOfMessage()))
        self.finished = True
        await self._drain()

    async def respond(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> None:
        """A whole response at once (``Content-Length`` is added)."""
        fields = [*headers, ("content-length", str(len(body)))]
        await self.start(status, fields)
        await self.write(body)
        await self.end()

    async def _drain(self) -> None:
        try:
            await self._stream.drain()
        except ConnectionClosed:
            raise ConnectionResetError("connection lost") from None


class HttpConnection:
    """Requests on one connection, answered in turn by ``app``.

    ``activity`` is the session's idle counters: a request counts as a
    message once its head is complete, body bytes as transfer.
    """

    def __init__(
        self,
        stream: ByteStream,
        activity: Activity,
        app: HttpApp,
        *,
        max_header_size: int = MAX_HEADER_SIZE,
        pool: BufferPool | None = None,
        scratch: memoryview | None = None,
    ) -> None:
        self.stream = stream
        self.activity = activity
        self.app = app
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
        self._inbox: deque[bytes] = deque()
        self._queued = 0
        self._eof = False
        self._paused = False
        self._wakeup = asyncio.Event()
        self._exchange: Exchange | None = None
        self.max_header_size = max_header_size
        self._fed = 0  # bytes given to h11 so far
        self._cycle_start = 0  # of them, those before this request's head
        #: The body being received past h11, if one is.
        self.raw: RawBody | None = None
        self._pool = pool
        self._scratch = scratch  # made at the first buffered read, if none is shared
        self._into_slot = False
        self._raw_paused = False
        self._resync = False  # a body went past h11: the next request needs a fresh h11
        self._handed_over = False  # the application took the connection (a WebSocket)

    # bytes in, for a buffered protocol ----------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the protocol's next read goes: a pooled buffer during a raw body."""
        slot = self.raw.slot() if self.raw is not None else None
        self._into_slot = slot is not None
        if slot is not None:
            return slot
        if self._scratch is None:
            self._scratch = memoryview(bytearray(64 * 1024))
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into what :meth:`get_buffer` gave."""
        raw = self.raw
        if not self._into_slot or raw is None:
            assert self._scratch is not None
            self.feed(bytes(self._scratch[:nbytes]))
            return
        self.activity.transferred += nbytes
        if raw.filled(nbytes):
            self._raw_wait()

    # bytes in, from the session's protocol callbacks --------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        raw = self.raw
        if raw is not None and raw.left:
            before = len(data)
            data = raw.add(data)
            self.activity.transferred += before - len(data)
            self._raw_wait()
            if not data:
                return
        self._inbox.append(data)
        self._queued += len(data)
        if self._queued > self._inbox_high() and not self._paused and not self.stream.closing:
            self._paused = True
            self.stream.pause_reading()
        self._wakeup.set()

    def _inbox_high(self) -> int:
        """Bytes the inbox may hold before reading pauses: a body's share, or requests'."""
        exchange = self._exchange
        body = exchange is not None and not exchange.body_done
        return INBOX_HIGH if body else HEADS_HIGH

    def feed_eof(self) -> None:
        """The client will send nothing more."""
        self._eof = True
        self._wakeup.set()

    @property
    def eof(self) -> bool:
        """Whether the client has said it will send nothing more."""
        return self._eof

    # a body past h11 ----------------------------------------------------------------

    def start_raw(self, length: int) -> None:
        """Receive the next ``length`` bytes (what h11 has not seen of a body) past h11."""
        self.raw = raw = RawBody(length, self._pool)
        while self._inbox and raw.left:
            data = self._inbox.popleft()
            self._queued -= len(data)
            rest = raw.add(data)
            self.activity.transferred += len(data) - len(rest)
            if rest:
                self._inbox.appendleft(rest)
                self._queued += len(rest)
        self._raw_wait()
        if self._paused and self._queued < INBOX_LOW:  # the inbox went into the body
            self._paused = False
            if not self._raw_paused and not self.stream.closing:
                self.stream.resume_reading()

    def _raw_wait(self) -> None:
        """Bytes arrived for the raw body: wake its reader; pause reading while it is full."""
        raw = self.raw
        if raw is not None and raw.full and not self._raw_paused and not self.stream.closing:
            self._raw_paused = True
            self.stream.pause_reading()
        self._wakeup.set()

    def raw_taken(self) -> None:
        """The application wrote what it took of the raw body: read again if paused for it."""
        if self._raw_paused and self.raw is not None and not self.raw.full:
            self._raw_paused = False
            if not self._paused and not self.stream.closing:
                self.stream.resume_reading()

    async def wait_raw(self) -> None:
        """Wait for more of the raw body, or the client's end.

        A buffer fills before its bytes are handed on; once the client has
        paused for :data:`STALL` seconds, what it holds is handed on as it is.
        """
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), STALL)
        except TimeoutError:
            if self.raw is not None:
                self.raw.seal()

    def end_raw(self) -> None:
        """The raw body is over: its buffers go back; a complete one lets h11 start afresh."""
        raw, self.raw = self.raw, None
        if raw is None:
            return
        self._resync = raw.left == 0
        raw.close()
        if self._raw_paused:
            self._raw_paused = False
            if not self._paused and not self.stream.closing:
                self.stream.resume_reading()

    async def next_event(self) -> object:
        """The next h11 event from the client (waiting for bytes as needed)."""
        conn = self.h11
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self._inbox:
                data = self._inbox.popleft()
                high = self._inbox_high()
                if high == HEADS_HIGH and len(data) > self.max_header_size:
                    # Requests sent ahead go to h11 a head's worth at a time, so that
                    # h11 holds no more of them than the inbox would.
                    self._inbox.appendleft(data[self.max_header_size :])
                    data = data[: self.max_header_size]
                self._queued -= len(data)
                low = min(INBOX_LOW, high // 2)
                if self._paused and self._queued < low and not self.stream.closing:
                    self._paused = False
                    self.stream.resume_reading()
                self._fed += len(data)
                conn.receive_data(data)
            elif self._eof:
                conn.receive_data(b"")
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    def hand_over(self) -> bytes:
        """The application takes the connection over (an upgrade): stop serving requests.

        Returns what the client sent after the request; the caller now
        receives the connection's bytes itself.
        """
        self._handed_over = True
        rest = bytes(self.h11.trailing_data[0]) + b"".join(self._inbox)
        self._inbox.clear()
        self._queued = 0
        if self._paused and not self.stream.closing:
            self._paused = False
            self.stream.resume_reading()
        return rest

    # serving ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the client or a response ends the connection."""
        try:
            while await self._one():
                pass
        except (ConnectionError, ConnectionClosed) as exc:
            log.info("%s: HTTP connection ended: %s", self.stream.peer, exc)
            self.stream.abort()
            return
        if not self._handed_over:
            await self._close()

    async def _one(self) -> bool:
        """Answer one request; whether the connection can take another."""
        try:
            event = await self.next_event()
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint, str(exc))
            return False
        if not isinstance(event, h11.Request):
            return False  # the client closed (or sent nothing at all)
        # h11 bounds a head still incomplete; one that arrived whole is measured here.
        parsed = self._fed - len(self.h11.trailing_data[0])
        if parsed - self._cycle_start > self.max_header_size:
            await self._refuse(431, f"request head over {self.max_header_size} bytes")
            return False
        self.activity.messages += 1
        exchange = self._exchange = Exchange(self, event)
        if _bodiless(exchange.headers):
            await self.next_event()  # the end of the (empty) body, already parsed
            exchange.body_done = True
        try:
            await self.app.handle(exchange)
        except HttpError as exc:
            if exchange.started:
                log.info("%s: %s", self.stream.peer, exc.message)
                return False
            await error_response(exchange, exc)
        except h11.RemoteProtocolError as exc:
            if not exchange.started:
                await self._refuse(exc.error_status_hint, str(exc))
            return False
        except (ConnectionError, ConnectionClosed):
            raise
        except Exception:
            log.exception("HTTP request from %s failed", self.stream.peer)
            if not exchange.started:
                await error_response(exchange, HttpError(500, "internal server error"))
            return False
        finally:
            self._exchange = None
        if self._handed_over or not exchange.finished:
            return False
        return await self._next_cycle(exchange)

    async def _next_cycle(self, exchange: Exchange) -> bool:
        conn = self.h11
        if conn.our_state is not h11.DONE:
            return False
        if self._resync:  # the body went past h11: the next request gets a fresh one
            self._resync = False
            self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_size)
            self._fed = self._cycle_start = 0
            return True
        if conn.their_state is h11.SEND_BODY:
            return False  # answered before the body was read: closed with Connection: close
        if conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        self._cycle_start = self._fed - len(conn.trailing_data[0])
        return True

    async def _refuse(self, status: int, message: str) -> None:
        """Answer a request h11 could not parse, then close."""
        log.info("%s: bad HTTP request: %s", self.stream.peer, message)
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        self.stream.write(
            _plain_response(self.h11, status, f"{reason(status).decode()}: {message}\n")
        )

    def failed(self, reason_text: str) -> None:
        """The session is being closed (idle, shutting down): answer a request that waits."""
        exchange = self._exchange
        if exchange is not None and exchange.started:
            return
        conn = self.h11
        status = 503 if "shutting down" in reason_text else 408
        text = f"{reason(status).decode()}: {reason_text}\n"
        if conn.their_state is h11.IDLE:
            if self._inbox or conn.trailing_data[0]:  # half a request head: too slow
                self.stream.write(_raw_response(status, text))
            return
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.stream.write(_plain_response(conn, status, text))

    async def _close(self) -> None:
        """Close once what was written has gone; drain what the client still sends a while."""
        stream = self.stream
        if stream.closing:
            return
        if self._eof or not stream.can_half_close:
            stream.close()
            return
        stream.half_close()
        self._inbox.clear()
        self._queued = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER
        discarded = 0
        while not self._eof and discarded <= DISCARD_LIMIT:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)
            discarded += self._queued
            self._inbox.clear()
            self._queued = 0
            if self._paused:
                self._paused = False
                stream.resume_reading()
        stream.close()


def _bodiless(headers: Headers) -> bool:
    """Whether a request has no body at all (no length and no chunked encoding)."""
    return "transfer-encoding" not in headers and headers.get("content-length", "0") == "0"


def _plain_response(conn: h11.Connection, status: int, text: str) -> bytes:
    body = text.encode()
    try:
        return b"".join(
            (
                conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            ("content-type", "text/plain; charset=utf-8"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                        reason=reason(status),
                    )
                )
                or b"",
                conn.send(h11.Data(data=body)) or b"",
                conn.send(h11.EndOfMessage()) or b"",
            )
        )
    except h11.LocalProtocolError:
        return b""


def _raw_response(status: int, text: str) -> bytes:
    """A response to a request whose head never completed (h11 has no request to answer)."""
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason(status).decode()}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
