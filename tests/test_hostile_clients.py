"""Clients that misbehave on purpose, over real sockets and against sessions in memory.

Each test is an attack that once cost the server something it should not
have: memory, log lines, time.  The server must keep serving everyone else
and spend no more than a small, fixed amount on the attacker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import tracemalloc
from collections.abc import Callable

import pytest

from hosts import FakeHost, MemoryTransport, start
from socketeer.framing import Framing, make_codec
from socketeer.services import GreetService
from socketeer.tasks import MessageStream, task_service
from support import WAIT, ServeInThread

#: Empty lines in one burst: each is a whole message that greet answers.
BURST = 200_000


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), discarding what is still queued."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _BreakingTransport(MemoryTransport):
    """A connection that breaks on its second write, like one the peer reset meanwhile."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__(protocol)
        self.writes = 0
        self.writes_after_break = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        if self.closed:
            self.writes_after_break += 1
        elif self.writes == 2:
            self.closed = True  # asyncio's transport closes itself when send() fails


def test_a_session_stops_answering_once_its_connection_broke() -> None:
    session = GreetService().new_session(FakeHost())
    transport = _BreakingTransport(session)
    session.connection_made(transport)
    session.data_received(b"\n" * 1000)  # the first answer finds the connection broken
    assert transport.writes_after_break == 0


def test_a_reset_after_a_burst_of_lines_costs_no_log_flood(
    serve_in_thread: ServeInThread, caplog: pytest.LogCaptureFixture
) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="line")
    assert endpoint.host is not None
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        sock = socket.create_connection((endpoint.host, endpoint.port), WAIT)
        sock.sendall(b"\n" * BURST)
        _reset(sock)
    # the server is still there, and answers the next client
    with socket.create_connection((endpoint.host, endpoint.port), WAIT) as sock:
        sock.settimeout(WAIT)
        sock.sendall(b"rose\n")
        got = b""
        while b"hello, rose!\n" not in got:
            chunk = sock.recv(4096)
            assert chunk, got
            got += chunk
    warnings = [r for r in caplog.records if r.name == "asyncio"]
    assert len(warnings) < 10, f"{len(warnings)} asyncio warnings, e.g. {warnings[0].getMessage()}"


# a service that awaits, and a client that floods it ------------------------------------


def _held_by(action: Callable[[], object]) -> int:
    """Bytes of Python objects that ``action`` allocated and still holds."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("framing", ["line", "auto"])
def test_one_read_of_tiny_lines_does_not_fill_a_task_sessions_inbox(framing: Framing) -> None:
    async def never_reads(stream: MessageStream) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        host = FakeHost()
        session = task_service(never_reads, framing=framing).new_session(host)
        transport = start(session)
        burst = b"ab\n" * 40_000  # one read: 120 KB, 40,000 messages
        held = _held_by(lambda: session.data_received(burst))
        assert not transport.reading
        assert held < 64 * 1024, f"{held // 1024} KiB held for 40,000 unread messages"
        for task in host.tasks:
            task.cancel()
        await asyncio.wait(host.tasks, timeout=WAIT)

    asyncio.run(main())


def _reads(burst: bytes, size: int, at_newlines: bool) -> list[bytes]:
    """``burst`` cut into reads of about ``size`` bytes (each ending a line if asked)."""
    reads, start = [], 0
    while start < len(burst):
        end = min(start + size, len(burst))
        if at_newlines and end < len(burst):
            end = burst.rindex(b"\n", start, end) + 1
        reads.append(burst[start:end])
        start = end
    return reads


@pytest.mark.parametrize("framing", ["line", "length", "raw", "auto"])
def test_a_task_handler_gets_every_message_of_a_flood_in_order(framing: Framing) -> None:
    got: list[bytes] = []

    async def slow(stream: MessageStream) -> None:
        async for message in stream:
            got.append(message)
            await asyncio.sleep(0)

    codec = make_codec(framing)
    sent = [str(n).encode() for n in range(20_000)]
    burst = b"".join(sent) if framing == "raw" else b"".join(codec.encode(m) for m in sent)

    async def main() -> None:
        host = FakeHost()
        session = task_service(slow, framing=framing).new_session(host)
        transport = start(session)
        for data in _reads(burst, 50_000, at_newlines=framing in ("line", "auto")):
            await asyncio.wait_for(_reading(transport), WAIT)
            session.data_received(data)
        session.eof_received()
        await asyncio.wait(host.tasks, timeout=WAIT)

    asyncio.run(main())
    if framing == "raw":  # one message per read: the bytes are all there, in order
        assert b"".join(got) == burst
    else:
        assert got == sent


async def _reading(transport: MemoryTransport) -> None:
    while not transport.reading:
        await asyncio.sleep(0)
