"""Every service's session driven without a server or a socket, with the clock in hand.

The host is :class:`hosts.FakeHost` and the connection an in-memory
transport: what the session writes, whether it reads, when it closes and
whether it counts as idle are all observed directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hosts import FakeClock, FakeHost, MemoryTransport, start
from socketeer.framing import LengthPrefixCodec
from socketeer.host import SessionLimits
from socketeer.idle import IdleSweep
from socketeer.services import ChatService, EchoService, GreetService
from socketeer.services.files import FilesService
from socketeer.services.files.connection import (
    CLIENT,
    NEED_DATA,
    Event,
    FilesConnection,
    frame,
)
from socketeer.services.files.messages import (
    Done,
    Error,
    Hello,
    List,
    Listing,
    Ok,
    Put,
    Ready,
    Welcome,
    decode,
)
from socketeer.session import Session
from socketeer.tasks import MessageStream, task_service

TIMEOUT = 5.0
MIB = 1024 * 1024


# greet and echo: a handler in a session ---------------------------------------------


def test_greet_session_without_a_socket() -> None:
    host = FakeHost()
    session = GreetService().new_session(host)
    transport = start(session)
    assert transport.take() == b"welcome!\n"
    session.data_received(b"rose\n")  # a first line: the session speaks lines from now on
    assert transport.take() == b"hello, rose!\n"
    session.data_received(b"thi")
    assert transport.take() == b""
    session.data_received(b"nk\nexit\n")
    assert transport.take() == b"hello, think!\n"
    assert transport.closed
    assert host.released == [session]


def test_echo_session_keeps_the_hosts_message_limit() -> None:
    host = FakeHost(SessionLimits(framing="line", max_message_size=8))
    session = EchoService().new_session(host)
    transport = start(session)
    session.data_received(b"short\n")
    assert transport.take() == b"short\n"
    session.data_received(b"far too long for the limit\n")
    assert transport.take().startswith(b"error: line of ")
    assert transport.closed


def test_a_stream_session_stops_reading_while_its_client_does_not_read() -> None:
    session = EchoService().new_session(FakeHost())
    transport = start(session)
    session.pause_writing()
    assert not transport.reading
    session.resume_writing()
    assert transport.reading


def test_a_refused_reason_is_escaped() -> None:
    assert GreetService().refusal("busy \x1b[2J") == b"error: busy \\x1b[2J\n"


# idleness: whole messages, not bytes --------------------------------------------------


def sweep_until(
    sweep: IdleSweep,
    sessions: list[Session],
    clock: FakeClock,
    seconds: float,
    feed: Callable[[], None],
) -> list[Session]:
    """Run the sweep every interval for ``seconds``, calling ``feed`` once a second."""
    idle: list[Session] = []
    elapsed = 0.0
    while elapsed < seconds and not idle:
        clock.advance(1.0)
        elapsed += 1.0
        feed()
        if elapsed % sweep.interval == 0:
            idle = sweep.sweep(sessions, clock())
    return idle


def test_a_byte_a_second_without_a_whole_line_is_idle() -> None:
    clock = FakeClock()
    host = FakeHost(SessionLimits(framing="line"), clock=clock)
    sweep = IdleSweep(timeout=8.0)
    slow = GreetService().new_session(host)
    start(slow)
    idle = sweep_until(sweep, [slow], clock, 30, lambda: slow.data_received(b"x"))
    assert idle == [slow], "a slowloris client was never found idle"
    assert clock() - 1000.0 <= 8.0 + sweep.interval


def test_a_line_now_and_then_is_not_idle() -> None:
    clock = FakeClock()
    host = FakeHost(clock=clock)
    sweep = IdleSweep(timeout=8.0)
    talker = GreetService().new_session(host)
    start(talker)
    idle = sweep_until(sweep, [talker], clock, 60, lambda: talker.data_received(b"a\n"))
    assert idle == []


def test_a_transfer_counts_only_while_it_keeps_the_minimum_rate() -> None:
    clock = FakeClock()
    host = FakeHost(clock=clock)
    sweep = IdleSweep(timeout=8.0, min_rate=100)
    fast, slow = GreetService().new_session(host), GreetService().new_session(host)

    def feed() -> None:
        fast.transferred += 500
        slow.transferred += 10

    assert sweep_until(sweep, [fast, slow], clock, 30, feed) == [slow]


def test_a_silent_session_is_idle_from_its_start() -> None:
    clock = FakeClock()
    sweep = IdleSweep(timeout=4.0)
    silent = GreetService().new_session(FakeHost(clock=clock))
    clock.advance(2.0)
    assert sweep.sweep([silent], clock()) == []
    clock.advance(2.0)
    assert sweep.sweep([silent], clock()) == [silent]


# files: the session and its buffers ---------------------------------------------------


class FilesPeer:
    """The client's side of a files session driven in memory."""

    def __init__(self, session: Session, transport: MemoryTransport) -> None:
        self.session = session
        self.transport = transport
        self.conn = FilesConnection(CLIENT)

    def send(self, message: Hello | List | Put | Done) -> None:
        self.session.data_received(self.conn.send(message))

    def send_raw(self, data: bytes) -> None:
        self.conn.sent_raw(len(data))
        self.session.data_received(data)

    async def next(self) -> Event:
        async with asyncio.timeout(TIMEOUT):
            while True:
                data = self.transport.take()
                if data:  # (b"" would mean the server closed)
                    self.conn.receive_data(data)
                event = self.conn.next_event()
                if event is not NEED_DATA:
                    return event
                await asyncio.sleep(0.001)


def test_files_session_without_a_socket_and_its_upload_buffers(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    service = FilesService(tmp_path, allow_upload=True, token="t")

    async def main() -> None:
        host = FakeHost()
        session = service.new_session(host)
        peer = FilesPeer(session, start(session))
        assert service.buffers.allocated == 0, "a connection that said nothing holds no buffer"
        peer.send(Hello(token="t"))
        assert isinstance(await peer.next(), Welcome)
        peer.send(List(""))
        listing = await peer.next()
        assert isinstance(listing, Listing)
        assert [entry.name for entry in listing.entries] == ["a.txt"]
        data = b"x" * 100_000
        peer.send(Put("b.bin", size=len(data)))
        assert await peer.next() == Ready(0)
        assert service.buffers.lent > 0, "an upload takes buffers from the service's pool"
        peer.send_raw(data)
        peer.send(Done(hashlib.sha256(data).hexdigest()))
        assert await peer.next() == Ok()
        assert service.buffers.lent == 0, "and gives them back when it ends"
        assert (tmp_path / "b.bin").read_bytes() == data
        assert session.messages >= 4
        assert session.transferred == len(data)
        peer.transport.close()
        await asyncio.wait(host.tasks, timeout=TIMEOUT)
        assert host.released == [session]

    asyncio.run(main())


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the session run until ``condition`` holds (at most TIMEOUT)."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_a_files_client_that_does_not_read_its_answers_is_not_answered_further(
    tmp_path: Path,
) -> None:
    # A client that sends request after request and reads no answer: the server
    # stops taking its requests once the connection's buffer is full, instead of
    # keeping every answer (a listing each) in memory.
    for number in range(200):
        (tmp_path / f"{number:04d}-{'x' * 60}").touch()
    service = FilesService(tmp_path)

    async def main() -> None:
        host = FakeHost()
        session = service.new_session(host)
        transport = start(session)
        peer = FilesPeer(session, transport)
        peer.send(Hello())
        assert isinstance(await peer.next(), Welcome)
        transport.high_water = 64 * 1024
        listing = len(frame(Listing("", tuple(service.store.list("")))))
        sent = 0
        while transport.reading and sent < 100:
            session.data_received(frame(List("")))
            sent += 1
            taken = sent + 1  # and the hello
            await until(
                lambda: session.messages >= taken or not transport.reading,  # noqa: B023
                "the request to be taken",
            )
        assert not transport.reading, f"{sent} requests taken from a client that reads nothing"
        assert len(transport.written) <= transport.high_water + 2 * listing
        answers = LengthPrefixCodec().feed(transport.take())
        assert answers
        assert all(decode(body).op == "listing" for body in answers)
        assert transport.reading, "it reads again once the client has taken its answers"
        transport.close()
        await asyncio.wait(host.tasks, timeout=TIMEOUT)

    asyncio.run(main())


def test_an_upload_without_pool_buffers_holds_one_read_at_a_time(tmp_path: Path) -> None:
    service = FilesService(tmp_path, allow_upload=True, token="t")
    held = service.buffers.take(service.buffers.count)  # other uploads hold every buffer
    data = os.urandom(4 * MIB)
    piece = 256 * 1024

    async def main() -> None:
        host = FakeHost()
        session = service.new_session(host)
        transport = start(session)
        peer = FilesPeer(session, transport)
        peer.send(Hello(token="t"))
        assert isinstance(await peer.next(), Welcome)
        peer.send(Put("big.bin", size=len(data)))
        assert await peer.next() == Ready(0)
        fed = 0
        while transport.reading and fed < len(data):  # faster than the disk: it never runs
            peer.send_raw(data[fed : fed + piece])
            fed += piece
        assert fed <= 2 * piece, f"{fed} bytes taken while none could be written"
        while fed < len(data):
            await until(lambda: transport.reading, "reading to resume")
            peer.send_raw(data[fed : fed + piece])
            fed += piece
        peer.send(Done(hashlib.sha256(data).hexdigest()))
        assert await peer.next() == Ok()
        transport.close()
        await asyncio.wait(host.tasks, timeout=TIMEOUT)

    asyncio.run(main())
    service.buffers.give(held)
    assert (tmp_path / "big.bin").read_bytes() == data


def test_a_refused_files_client_gets_a_busy_error_frame(tmp_path: Path) -> None:
    conn = FilesConnection(CLIENT)
    conn.send(Hello())
    conn.receive_data(FilesService(tmp_path).refusal("server busy: 1 connections already open"))
    refusal = conn.next_event()
    assert isinstance(refusal, Error)
    assert (refusal.code, refusal.message) == ("busy", "server busy: 1 connections already open")


# chat ------------------------------------------------------------------------------


def test_chat_sessions_without_a_socket() -> None:
    service = ChatService()

    async def main() -> None:
        host = FakeHost()
        alice, bob = service.new_session(host), service.new_session(host)
        to_alice, to_bob = start(alice, ("192.0.2.1", 1)), start(bob, ("192.0.2.2", 2))
        alice.data_received(b"alice\n")
        bob.data_received(b"bob\n")
        await asyncio.sleep(0)  # deliveries are written at the end of the loop's pass
        to_alice.take(), to_bob.take()
        alice.data_received(b"hi bob\n")
        await asyncio.sleep(0)
        heard = to_bob.take()
        assert b"alice" in heard
        assert b"hi bob" in heard
        assert b"hi bob" in to_alice.take()
        assert alice.messages == 2
        bob.connection_lost(None)
        assert host.released == [bob]

    asyncio.run(main())


# a service that awaits ----------------------------------------------------------------


def test_a_task_session_without_a_socket() -> None:
    async def shout(stream: MessageStream) -> None:
        async for message in stream:
            await asyncio.sleep(0)  # it may await anything between messages
            await stream.send(message.upper())

    async def main() -> None:
        host = FakeHost()
        session = task_service(shout, name="shout").new_session(host)
        transport = start(session)
        session.data_received(b"one\ntwo\n")
        session.eof_received()
        await asyncio.wait(host.tasks, timeout=TIMEOUT)
        assert transport.take() == b"ONE\nTWO\n"
        assert transport.closed
        assert session.messages == 2

    asyncio.run(main())


def test_a_failing_task_handler_tells_only_its_client() -> None:
    async def broken(stream: MessageStream) -> None:
        await stream.receive()
        raise RuntimeError("bug")

    async def main() -> None:
        host = FakeHost()
        session = task_service(broken).new_session(host)
        transport = start(session)
        session.data_received(b"x\n")
        await asyncio.wait(host.tasks, timeout=TIMEOUT)
        assert transport.take() == b"error: internal server error\n"
        assert transport.closed

    asyncio.run(main())


@pytest.mark.parametrize("pieces", [[b"way too long\n"], [b"way ", b"too ", b"long\n"]])
def test_a_task_session_refuses_an_oversized_message(pieces: list[bytes]) -> None:
    async def reader(stream: MessageStream) -> None:
        async for _ in stream:
            pass

    async def main() -> None:
        host = FakeHost(SessionLimits(max_message_size=6))
        session = task_service(reader).new_session(host)
        transport = start(session)
        for piece in pieces:
            session.data_received(piece)
        await asyncio.wait(host.tasks, timeout=TIMEOUT)
        assert transport.take().startswith(b"error: line of ")
        assert transport.closed

    asyncio.run(main())


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        (("192.0.2.7", 5000), "192.0.2.7"),
        (("2001:db8:1:2::beef", 5000, 0, 0), "2001:db8:1:2::/64"),
        ("/tmp/client.sock", "unix"),
    ],
)
def test_a_stream_says_who_its_peer_counts_as_for_per_address_limits(
    peer: object, key: str
) -> None:
    # login bans (files), rooms per address (chat) and --max-conns-per-ip all use it
    session = EchoService().new_session(FakeHost())
    transport = MemoryTransport(session, peer)  # type: ignore[arg-type]
    session.connection_made(transport)
    assert session.stream.address_key == key
