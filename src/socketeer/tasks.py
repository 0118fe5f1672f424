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
from .framing import Codec, Framing, make_codec
from .host import Host, Task
from .service import Service
from .session import Session
from .visible import visible

__all__ = ["MessageStream", "TaskService", "task_service"]

#: Whole messages waiting for the handler before the session stops reading.
INBOX_HIGH = 64


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
        self._ended = False
        self._problem: ProtocolError | None = None
        self._arrived: asyncio.Future[None] | None = None
        self._task: Task | None = None
        self._paused = False

    def started(self) -> None:
        self._task = self.host.spawn(self._run(), f"{self._service.name} session with {self.peer}")

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.codec.feed(data)
        except FrameTooLarge as exc:
            messages, self._problem = exc.messages, exc
        except ProtocolError as exc:
            messages, self._problem = [], exc
        self.messages += len(messages)
        self._inbox.extend(messages)
        if self._problem is not None:
            self.stream.pause_reading()
        elif len(self._inbox) >= INBOX_HIGH and not self._paused:
            self._paused = True
            self.stream.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        try:
            self._inbox.extend(self.codec.end())
        except ProtocolError as exc:
            self._problem = exc
        self._ended = True
        self._wake()
        return True  # the handler may still be answering: it closes when done

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
        if self._paused and len(self._inbox) < INBOX_HIGH // 2 and not self.closing:
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
