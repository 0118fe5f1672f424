"""The server's own defences over real sockets: slow senders, many connections from
one address, connect bursts, and a clean end however the server is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hosts import MemoryTransport
from socketeer import Endpoint, Server, ServerConfig, parse_endpoint, serve
from socketeer.binding import system_backlog
from socketeer.service import Service
from socketeer.services import GreetService
from socketeer.services.files import FilesService
from socketeer.services.files.client import FilesClient, FilesError
from socketeer.tasks import MessageStream, task_service
from support import WAIT, ServeInThread, ThreadedServer, recv_all, wait_until

LOOPBACK = parse_endpoint("127.0.0.1:0")


def connect(endpoint: Endpoint, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    try:
        sock.bind((source, 0))
        assert endpoint.host is not None
        sock.connect((endpoint.host, endpoint.port))
    except BaseException:
        sock.close()
        raise
    return sock


# slow senders -------------------------------------------------------------------------


def test_a_byte_at_a_time_without_a_whole_line_is_closed_as_idle(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="line", idle_timeout=0.4)
    trickler, talker = connect(endpoint), connect(endpoint)
    with trickler, talker:
        assert trickler.recv(100) == b"welcome!\n"
        assert talker.recv(100) == b"welcome!\n"
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 5.0:  # bounded: 50 bytes at most
            try:
                trickler.sendall(b"x")
            except OSError:
                closed_after = time.monotonic() - started
                break
            talker.sendall(b"a\n")
            assert talker.recv(100) == b"hello, a!\n", "a client finishing lines stays"
            readable, _, _ = select.select([trickler], [], [], 0.1)
            if readable:
                closed_after = time.monotonic() - started
                try:
                    said = recv_all(trickler)
                except ConnectionResetError:  # a byte crossed the close: the kernel said reset
                    break
                assert said == b"error: idle for 0.4 seconds\n"
                break
        assert closed_after is not None, "a client trickling bytes was never closed"


# many connections from one address ----------------------------------------------------


def test_max_conns_per_ip_refuses_the_next_one_from_that_address_only(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread("greet", max_conns_per_ip=2)
    first, second = connect(endpoint), connect(endpoint)
    with first, second:
        assert first.recv(100) == b"welcome!\n"
        assert second.recv(100) == b"welcome!\n"
        with connect(endpoint) as third:
            assert recv_all(third) == (b"error: too many connections from 127.0.0.1 (at most 2)\n")
        with connect(endpoint, source="127.0.0.2") as other:
            assert other.recv(100) == b"welcome!\n"
    # the count goes down when they leave
    deadline = time.monotonic() + WAIT
    while True:
        with connect(endpoint) as again:
            reply = again.recv(100)
        if reply == b"welcome!\n" or time.monotonic() > deadline:
            break
    assert reply == b"welcome!\n"


def test_a_refused_files_client_reads_busy_in_its_own_protocol(tmp_path: Path) -> None:
    threaded = ThreadedServer(FilesService(tmp_path), ["127.0.0.1:0"], ServerConfig(max_conns=1))
    (endpoint,) = threaded.start()
    try:
        with FilesClient.connect(endpoint), pytest.raises(FilesError) as refused:
            FilesClient.connect(endpoint)
        assert refused.value.code == "busy"
        assert "server busy" in str(refused.value)
    finally:
        threaded.stop()


# the listen backlog ---------------------------------------------------------------------


def listen_queue(port: int) -> int:
    """The backlog of the listening socket on ``port``, as ``ss`` reports it (Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT,
    ).stdout
    (line,) = out.strip().splitlines()
    return int(line.split()[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) not installed")
@pytest.mark.parametrize("backlog", [None, 77])
def test_the_backlog_is_what_was_asked_not_asyncios_100(
    serve_in_thread: ServeInThread, backlog: int | None
) -> None:
    _, (endpoint,) = serve_in_thread("greet", backlog=backlog)
    assert listen_queue(endpoint.port) == (backlog or system_backlog())


# the server owns its tasks and the service's life ---------------------------------------


class Lifecycle(Service):
    name = "lifecycle"

    def __init__(self) -> None:
        self.events: list[str] = []

    def new_handler(self) -> GreetService:  # type: ignore[override]
        raise AssertionError("not used")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self.events.append("started")
        try:
            yield
        finally:
            self.events.append("stopped")


def test_a_cancelled_serve_stops_the_listener_and_the_service() -> None:
    service = Lifecycle()

    async def main() -> Endpoint:
        server = Server(service, [LOOPBACK])
        ready: asyncio.Future[list[Endpoint]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(server, on_ready=ready.set_result, signals=()))
        (endpoint,) = await asyncio.wait_for(ready, WAIT)
        assert service.events == ["started"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        return endpoint

    endpoint = asyncio.run(main())
    assert service.events == ["started", "stopped"]
    with pytest.raises(ConnectionRefusedError):
        connect(endpoint).close()


def test_stop_cancels_handler_tasks_and_lets_them_clean_up() -> None:
    cleaned: list[str] = []

    async def waits_forever(stream: MessageStream) -> None:
        await stream.send(b"ready")
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(stream.peer)

    async def main() -> None:
        server = Server(task_service(waits_forever), [LOOPBACK], ServerConfig(grace=0.1))
        (endpoint,) = await server.start()
        assert endpoint.host is not None
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        assert await asyncio.wait_for(reader.readline(), WAIT) == b"ready\n"
        await asyncio.wait_for(server.stop(), WAIT)
        assert await asyncio.wait_for(reader.read(), WAIT) == b"error: server is shutting down\n"
        writer.close()

    asyncio.run(main())
    assert len(cleaned) == 1


def test_the_readme_service_that_awaits() -> None:
    async def lookup(stream: MessageStream) -> None:
        async for name in stream:
            address = await asyncio.get_running_loop().getaddrinfo(name.decode(), None)
            await stream.send(str(address[0][4][0]).encode())

    async def main() -> None:
        async with Server(task_service(lookup, name="lookup"), [LOOPBACK]) as server:
            (endpoint,) = server.endpoints
            assert endpoint.host is not None
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.write(b"127.0.0.1\nlocalhost\n")
            writer.write_eof()
            replies = await asyncio.wait_for(reader.read(), WAIT)
            assert replies.splitlines()[0] == b"127.0.0.1"
            assert len(replies.splitlines()) == 2
            writer.close()

    asyncio.run(main())


def test_a_running_files_service_expires_abandoned_partials(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".old.bin.socketeer-part", tmp_path / ".new.bin.socketeer-part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    service = FilesService(tmp_path, allow_upload=True, token="t", partial_ttl=86400)
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig())
    threaded.start()
    try:
        wait_until(lambda: not stale.exists(), "the stale partial to be deleted")
        assert fresh.exists()
    finally:
        threaded.stop()


def test_max_conns_per_ip_counts_an_ipv6_client_by_its_64() -> None:
    """A host picks any address in its /64: they count as one client."""

    async def main() -> list[bytes]:
        async with Server(GreetService(), [LOOPBACK], ServerConfig(max_conns_per_ip=2)) as server:
            said = []
            for peer in [
                "2001:db8:1:2::1",
                "2001:db8:1:2::beef",
                "2001:db8:1:2:ffff::9",
                "2001:db8:9::1",
            ]:
                transport = MemoryTransport(asyncio.Protocol(), (peer, 5000))
                server._arrived(transport)
                said.append(transport.take())
            return said

    said = asyncio.run(main())
    assert said[:2] == [b"welcome!\n", b"welcome!\n"]
    assert said[2] == b"error: too many connections from 2001:db8:1:2::/64 (at most 2)\n"
    assert said[3] == b"welcome!\n", "another /64 is another client"
