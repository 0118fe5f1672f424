"""Clients that misbehave on purpose, over real sockets and against sessions in memory.

Each test is an attack that once cost the server something it should not
have: memory, log lines, time.  The server must keep serving everyone else
and spend no more than a small, fixed amount on the attacker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest

from hosts import FakeHost, MemoryTransport
from socketeer.services import GreetService
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
