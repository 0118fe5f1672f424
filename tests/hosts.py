"""Sessions without a server or a socket: a host with a clock in the test's hand.

:class:`FakeHost` is what a :class:`~socketeer.host.Host` promises: limits,
a monotonic clock the test moves (:class:`FakeClock`), tasks it owns, and a
record of released sessions.  :class:`MemoryTransport` is an asyncio
transport that keeps what the session writes and can be told to stop
taking bytes (flow control), so a session is driven byte by byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from socketeer.host import SessionLimits
from socketeer.service import Service
from socketeer.session import Session, StreamSession, handler_session


class FakeClock:
    """Monotonic time that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


class FakeHost:
    """A host for sessions under test."""

    def __init__(self, limits: SessionLimits | None = None, clock: FakeClock | None = None) -> None:
        self.limits = limits or SessionLimits()
        self.clock = clock or FakeClock()
        self.log = logging.getLogger("socketeer.server")
        self.released: list[object] = []
        self.tasks: list[asyncio.Task[None]] = []

    def now(self) -> float:
        return self.clock()

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self.tasks.append(task)
        return task

    def release(self, session: object) -> None:
        self.released.append(session)

    def handler_session(self, service: Service) -> StreamSession:
        return handler_session(self, service)


class MemoryTransport(asyncio.Transport):
    """An asyncio transport whose other end is the test."""

    def __init__(self, protocol: asyncio.BaseProtocol, peer: tuple[str, int] = ("192.0.2.7", 5000)):
        super().__init__()
        self._protocol = protocol
        self._peer = peer
        #: Set it to have the transport pause writing once this much waits untaken.
        self.high_water: int | None = None
        self.writing_paused = False
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.eof_sent = False
        self.aborted = False

    # what the session calls --------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self._peer}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:
            self.written += data
            over = self.high_water is not None and len(self.written) > self.high_water
            if over and not self.writing_paused:
                self.writing_paused = True
                self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_sent = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._protocol.connection_lost(None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # what the test calls -----------------------------------------------------------

    def take(self) -> bytes:
        """What the session wrote since the last call."""
        data = bytes(self.written)
        self.written.clear()
        if self.writing_paused:
            self.writing_paused = False
            self._protocol.resume_writing()
        return data


def start(session: Session, peer: tuple[str, int] = ("192.0.2.7", 5000)) -> MemoryTransport:
    """Give ``session`` an in-memory connection, as the server would."""
    transport = MemoryTransport(session, peer)
    session.connection_made(transport)
    return transport
