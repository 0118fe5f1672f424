"""DatagramEndpoint over real UDP sockets on 127.0.0.1: limits, timers, per-peer sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from socketeer.datagram import Address, DatagramCore, DatagramLimits, HandlerDatagrams, Peer
from socketeer.services.echo import EchoService
from socketeer.udp import DatagramEndpoint
from support import WAIT

HOST = "127.0.0.1"


class UdpServer:
    """A DatagramEndpoint on 127.0.0.1, port 0, on an event loop in a background thread."""

    def __init__(self, core: DatagramCore[Any], host: str = HOST, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def open() -> tuple[asyncio.DatagramTransport, DatagramEndpoint]:
            return await self.loop.create_datagram_endpoint(
                lambda: DatagramEndpoint(core, **options), local_addr=(host, 0)
            )

        self.transport, self.endpoint = asyncio.run_coroutine_threadsafe(open(), self.loop).result(
            WAIT
        )
        self.port: int = self.transport.get_extra_info("sockname")[1]

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def stop(self) -> None:
        self.call(self.transport.close)
        self.call(lambda: None)  # connection_lost has run
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def udp_server() -> Iterator[Callable[..., UdpServer]]:
    started: list[UdpServer] = []

    def start(core: DatagramCore[Any], host: str = HOST, **options: Any) -> UdpServer:
        started.append(UdpServer(core, host, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def client() -> Iterator[Callable[..., socket.socket]]:
    opened: list[socket.socket] = []

    def make(host: str = HOST) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.settimeout(WAIT)
        opened.append(sock)
        return sock

    yield make
    for sock in opened:
        sock.close()


def pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already waiting on ``sock``."""
    got = []
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(65_536))
    except BlockingIOError:
        return got
    finally:
        sock.settimeout(WAIT)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_from_one_socket_gets_the_limit_while_another_is_answered(
    udp_server: Callable[..., UdpServer],
    client: Callable[..., socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The clock stands still, so the bucket never refills during the test.
    core = HandlerDatagrams(EchoService(), DatagramLimits(rate=20, burst=40))
    server = udp_server(core, clock=Clock())
    flooder, other = client(), client()
    with caplog.at_level(logging.WARNING, "socketeer.server"):
        for _ in range(100):
            flooder.sendto(b"ping", (HOST, server.port))
        other.sendto(b"hello", (HOST, server.port))
        assert other.recvfrom(1024) == (b"hello", (HOST, server.port))
    # The flood came in before the other socket's datagram, so its replies are all here.
    assert pending(flooder) == [b"ping"] * 40
    port = flooder.getsockname()[1]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"throttling 127.0.0.1:{port}: over 20 replies a second (bursts of 40)"
    ]


def test_each_peer_is_answered_from_a_socket_of_its_own(
    udp_server: Callable[..., UdpServer], client: Callable[..., socket.socket]
) -> None:
    clock = Clock()
    core = HandlerDatagrams(EchoService(), DatagramLimits(idle=30))
    server = udp_server(core, clock=clock, peer_sockets=True)
    first, second = client(), client()

    first.sendto(b"one", (HOST, server.port))
    data, (host, own_port) = first.recvfrom(1024)
    assert (data, host) == (b"one", HOST)
    assert own_port != server.port
    # The rest of the exchange goes to that port, and comes back from it.
    first.sendto(b"two", (HOST, own_port))
    assert first.recvfrom(1024) == (b"two", (HOST, own_port))

    second.sendto(b"three", (HOST, server.port))
    data, (_, second_port) = second.recvfrom(1024)
    assert second_port not in (server.port, own_port)
    assert server.call(lambda: server.endpoint.peer_socket_count) == 2

    # Once the core forgets the first peer, its port is closed.
    clock.now = 31.0
    second.sendto(b"four", (HOST, server.port))
    assert second.recvfrom(1024)[0] == b"four"
    assert server.call(lambda: server.endpoint.peer_socket_count) == 1
    first.connect((HOST, own_port))
    first.send(b"anyone?")
    with pytest.raises(ConnectionRefusedError):
        first.recv(1024)


def test_peer_sockets_are_capped(
    udp_server: Callable[..., UdpServer], client: Callable[..., socket.socket]
) -> None:
    server = udp_server(HandlerDatagrams(EchoService()), peer_sockets=True, max_peer_sockets=1)
    first, second = client(), client()
    first.sendto(b"one", (HOST, server.port))
    assert first.recvfrom(1024)[1] != (HOST, server.port)
    second.sendto(b"two", (HOST, server.port))
    assert second.recvfrom(1024) == (b"two", (HOST, server.port))


def test_peer_sockets_over_ipv6(
    udp_server: Callable[..., UdpServer], client: Callable[..., socket.socket]
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = udp_server(HandlerDatagrams(EchoService()), "::1", peer_sockets=True)
    sock = client("::1")
    sock.sendto(b"one", ("::1", server.port))
    data, (host, own_port, *_) = sock.recvfrom(1024)
    assert (data, host) == (b"one", "::1")
    assert own_port != server.port
    sock.sendto(b"two", ("::1", own_port))
    data, (host, port, *_) = sock.recvfrom(1024)
    assert (data, host, port) == (b"two", "::1", own_port)


class Reminders(DatagramCore[Peer]):
    """``remind SECONDS`` is answered ``reminder`` that many seconds later, by the timer."""

    def __init__(self) -> None:
        super().__init__()
        self.due: list[tuple[float, Peer]] = []

    def new_peer(self, addr: Address, now: float) -> Peer:
        return Peer(addr, self.limits, now)

    def datagram_received(self, peer: Peer, data: bytes, now: float) -> None:
        self.due.append((now + float(data.removeprefix(b"remind ")), peer))

    def get_timer(self) -> float | None:
        timers = [when for when, _ in self.due]
        idle = super().get_timer()
        return min([*timers, idle] if idle is not None else timers, default=None)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        for when, peer in [d for d in self.due if d[0] <= now]:
            self.due.remove((when, peer))
            self.send(peer, b"reminder", now)


def test_the_core_timer_runs_on_the_event_loop(
    udp_server: Callable[..., UdpServer], client: Callable[..., socket.socket]
) -> None:
    server = udp_server(Reminders())
    sock = client()
    sock.sendto(b"remind 0.2", (HOST, server.port))
    sock.sendto(b"remind 0.05", (HOST, server.port))
    started = server.call(server.loop.time)
    assert sock.recv(1024) == b"reminder"
    assert sock.recv(1024) == b"reminder"
    assert server.call(server.loop.time) - started >= 0.15


class Fragile(HandlerDatagrams):
    def datagram_received(self, peer: Peer, data: bytes, now: float) -> None:
        if data == b"crash":
            raise RuntimeError("a bug in the core")
        super().datagram_received(peer, data, now)


def test_a_failing_core_loses_one_datagram_not_the_socket(
    udp_server: Callable[..., UdpServer],
    client: Callable[..., socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = udp_server(Fragile(EchoService()))
    sock = client()
    sock.sendto(b"crash", (HOST, server.port))
    sock.sendto(b"still here", (HOST, server.port))
    assert sock.recv(1024) == b"still here"
    assert "datagram from 127.0.0.1" in caplog.text
