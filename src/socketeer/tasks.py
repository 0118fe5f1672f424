"""Services that await: one task per connection, reading and writing whole messages.

Like trio's ``serve_tcp(handler)``: write ``async def handle(stream)``, and
the server runs it once per connection, in a task the server owns and
cancels when it stops::

    async def lookup(stream: MessageStream) -> None:
        async for name in stream:
            await stream.send(await resolve(name))

    server = Server(task_service(lookup, name="lookup"), [parse_endpoint(":7000")])

``stream.receive()`` returns the next whole message (framed by the
service's codec) or None once the client has finished; ``stream.send()``
frames a message and waits while the client is slow to read.  The session
counts each message for the idle timeout; when the handler returns, the
connection closes once what it sent has gone.  An exception in one
handler closes that connection (``error: internal server error`` to the
client, a traceback in the log) and no other.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable

from .errors import ConnectionClosed, FrameTooLarge, ProtocolError
from .framing import AutoCodec, Codec, Framing, RawCodec, make_codec
from .host import Host, Task
from .service import Service
from .session import Session
from .visible import visible

__all__ = ["MessageStream", "TaskService", "task_service"]

#: Whole messages waiting for the handler before the session stops reading.
INBOX_HIGH = 64
#: Bytes of messages waiting for the handler before the session stops reading.
INBOX_BYTES = 64 * 1024
#: Bytes given to a line or length codec at a time: one read of tiny messages (up to
#: 256 KiB, some 85,000 two-byte lines) is parsed only as fast as the handler takes them.
SLICE = 2048


def _next_piece(codec: Codec, data: bytes, start: int) -> bytes:
    """What to give ``codec`` next of ``data`` from ``start``: SLICE bytes where it can.

    A raw codec (and auto once it chose raw) takes one read as one message, so
    it gets all of it; auto takes its first piece to choose, so a read that ends
    a line is cut just after a line ending, and it still chooses lines.
    """
    end = start + SLICE
    if isinstance(codec, RawCodec) or (isinstance(codec, AutoCodec) and codec.mode == "raw"):
        end = len(data)
    elif isinstance(codec, AutoCodec) and codec.mode == "undecided":
        cut = data.rfind(b"\n", start, end) + 1 if data.endswith(b"\n") else 0
        end = cut if cut > start else len(data)
    return data if start == 0 and end >= len(data) else data[start:end]


class MessageStream:
    """One connection as a handler sees it: whole messages in, whole messages out."""

    def __init__(self, session: TaskSession) -> None:
        self._session = session

    @property
    def peer(self) -> str:
        """The client, as people read it."""
        return self._session.peer

    @property
    def address(self) -> str | None:
        """The client's IP address (None over a Unix socket)."""
        return self._session.stream.address

    async def receive(self) -> bytes | None:
        """The next whole message, or None once the client has finished sending."""
        return await self._session.next_message()

    async def send(self, message: bytes) -> None:
        """Send one message; wait while the client is slow to read."""
        session = self._session
        if session.closing:
            raise ConnectionClosed(f"connection to {session.peer} closed")
        session.stream.write(session.codec.encode(message))
        await session.stream.drain()

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> bytes:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message


class TaskSession(Session):
    """A connection whose service awaits: messages queue up for the service's task."""

    def __init__(self, host: Host, service: TaskService, codec: Codec) -> None:
        super().__init__(host)
        self._service = service
        self.codec = codec
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._unparsed = b""
        self._parsed = 0  # how much of ``_unparsed`` the codec has had
        self._ended = False
        self._problem: ProtocolError | None = None
        self._arrived: asyncio.Future[None] | None = None
        self._task: Task | None = None
        self._paused = False

    def started(self) -> None:
        self._task = self.host.spawn(self._run(), f"{self._service.name} session with {self.peer}")

    def data_received(self, data: bytes) -> None:
        if self._unparsed:  # only if the transport delivers after pause_reading()
            data = self._unparsed[self._parsed :] + data
        self._unparsed, self._parsed = data, 0
        self._parse()
        if self._problem is not None:
            self.stream.pause_reading()
        elif (self._unparsed or self._inbox_full()) and not self._paused:
            self._paused = True
            self.stream.pause_reading()
        self._wake()

    def _inbox_full(self, share: int = 1) -> bool:
        """Whether the inbox holds ``1/share`` of what it may before reading pauses."""
        return len(self._inbox) >= INBOX_HIGH // share or self._inbox_bytes >= INBOX_BYTES // share

    def _parse(self, bounded: bool = True) -> None:
        """Give the codec what arrived, a slice at a time, until the inbox is full.

        ``_unparsed`` is empty, or holds bytes from ``_parsed`` on that the codec has not had.
        """
        inbox, codec, data, done = self._inbox, self.codec, self._unparsed, self._parsed
        while done < len(data) and self._problem is None and not (bounded and self._inbox_full()):
            piece = _next_piece(codec, data, done)
            done += len(piece)
            try:
                messages = codec.feed(piece)
            except FrameTooLarge as exc:
                messages, self._problem = exc.messages, exc
            except ProtocolError as exc:
                messages, self._problem = [], exc
            self.messages += len(messages)
            self._inbox_bytes += sum(map(len, messages))
            inbox.extend(messages)
        if done == len(data):
            self._unparsed, done = b"", 0
        self._parsed = done

    def eof_received(self) -> bool:
        self._parse(bounded=False)
        if self._problem is None:
            try:
                last = self.codec.end()
            except ProtocolError as exc:
                self._problem = exc
            else:
                self._inbox_bytes += sum(map(len, last))
                self._inbox.extend(last)
        self._ended = True
        self._wake()
        # the handler may still be answering: it closes when done (TLS cannot wait)
        return not self.stream.secure

    def ended(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, None
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    async def next_message(self) -> bytes | None:
        """What :meth:`MessageStream.receive` returns."""
        while not self._inbox:
            if self._problem is not None:
                raise self._problem
            if self._ended:
                return None
            self._arrived = asyncio.get_running_loop().create_future()
            await self._arrived
        message = self._inbox.popleft()
        self._inbox_bytes -= len(message)
        if not self._inbox_full(share=2):
            self._parse()
            if self._paused and not self._unparsed and self._problem is None and not self.closing:
                self._paused = False
                self.stream.resume_reading()
        return message

    async def _run(self) -> None:
        try:
            await self._service.handle(MessageStream(self))
        except ProtocolError as exc:
            self.abort(str(exc))
        except (ConnectionClosed, ConnectionError):
            self.kill()
        except Exception:
            self.host.log.exception("session with %s failed", self.peer)
            self.abort("internal server error")
        finally:
            self.close()

    def notify_failure(self, reason: str) -> None:
        if not self.closing:
            self.stream.write(self.codec.encode(f"error: {visible(reason)}".encode()))


class TaskService(Service):
    """A service whose sessions await: override :meth:`handle`."""

    default_framing: Framing = "line"
    datagrams = False

    @abstractmethod
    async def handle(self, stream: MessageStream) -> None:
        """Serve one connection; return (or raise) to end it."""

    def new_session(self, host: Host) -> TaskSession:
        limits = host.limits
        codec = make_codec(limits.framing or self.default_framing, limits.max_message_size)
        return TaskSession(host, self, codec)


class _FunctionService(TaskService):
    def __init__(
        self, handle: Callable[[MessageStream], Awaitable[None]], name: str, framing: Framing
    ) -> None:
        self._handle = handle
        self.name = name
        self.default_framing = framing

    async def handle(self, stream: MessageStream) -> None:
        await self._handle(stream)


def task_service(
    handle: Callable[[MessageStream], Awaitable[None]],
    *,
    name: str = "custom",
    framing: Framing = "line",
) -> TaskService:
    """A service that runs ``await handle(stream)`` once per connection."""
    return _FunctionService(handle, name, framing)
