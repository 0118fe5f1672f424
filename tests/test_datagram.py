"""The sans-IO datagram core: reply limits, bounded state, and timers over a lossy fake network.

Time is a number the tests pass in; nothing here sleeps or opens a socket.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.datagram import (
    MAX_DATAGRAM,
    NO_LIMITS,
    WARNING_BURST,
    Address,
    DatagramCore,
    DatagramLimits,
    HandlerDatagrams,
    Peer,
)
from socketeer.service import Handler, Service
from socketeer.services.echo import EchoService
from socketeer.services.greet import GreetService

A: Address = ("192.0.2.1", 1000)
B: Address = ("192.0.2.2", 2000)


def spoofed(i: int) -> Address:
    return (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 53)


def exchange(core: DatagramCore[Peer], data: bytes, addr: Address, now: float) -> list[bytes]:
    """Deliver one datagram; return what the core sends back to its sender."""
    core.receive_datagram(data, addr, now)
    sent = core.datagrams_to_send(now)
    assert all(to == addr for _, to in sent)
    return [data for data, _ in sent]


def throttle_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("throttling")
    ]


# Limits ------------------------------------------------------------------------------------


def test_a_burst_from_one_address_is_cut_to_the_limit() -> None:
    core = HandlerDatagrams(EchoService(), DatagramLimits(rate=20, burst=40))
    answered = sum(len(exchange(core, b"ping", A, 0.0)) for _ in range(1000))
    assert answered == 40
    assert exchange(core, b"ping", B, 0.0) == [b"ping"]
    # A second later the bucket has 20 replies again, and no more.
    assert sum(len(exchange(core, b"ping", A, 1.0)) for _ in range(100)) == 20


def test_a_throttled_address_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    core = HandlerDatagrams(EchoService(), DatagramLimits(rate=20, burst=40))
    with caplog.at_level(logging.WARNING, "socketeer.server"):
        for i in range(2000):  # 200 a second for 10 seconds
            exchange(core, b"ping", A, i / 200)
    assert throttle_warnings(caplog) == [
        "throttling 192.0.2.1:1000: over 20 replies a second (bursts of 40)"
    ]


def test_the_global_cap_holds_however_many_sources(caplog: pytest.LogCaptureFixture) -> None:
    limits = DatagramLimits(rate=20, burst=40, total_rate=100, total_burst=200)
    core = HandlerDatagrams(EchoService(), limits)
    with caplog.at_level(logging.WARNING, "socketeer.server"):
        answered = sum(len(exchange(core, b"ping", spoofed(i), 0.0)) for i in range(5000))
    assert answered == 200
    assert throttle_warnings(caplog) == [
        "throttling all datagram replies: over 100 a second (bursts of 200)"
    ]


def test_greet_over_udp_is_no_amplifier() -> None:
    """One byte in would be nine out: no answer until the sender has sent three bytes' worth."""
    core = HandlerDatagrams(GreetService())
    assert exchange(core, b"a", A, 0.0) == []
    assert exchange(core, b"a", A, 0.0) == []
    assert exchange(core, b"a", A, 0.0) == [b"hello, a!"]
    assert exchange(core, b"rose", B, 0.0) == [b"hello, rose!"]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # which address
            st.integers(0, 40),  # message size
            st.integers(1, 8),  # copies of the message in the reply
            st.floats(0, 5),  # seconds since the last datagram
        ),
        max_size=200,
    )
)
def test_replies_never_pass_three_times_what_arrived(
    steps: list[tuple[int, int, int, float]],
) -> None:
    class Repeat(Service):
        name = "repeat"

        def new_handler(self) -> Handler:
            return RepeatHandler()

    class RepeatHandler(Handler):
        def received(self, message: bytes) -> Sequence[bytes]:
            copies, body = message[0], message[1:]
            return [body * copies + b"!" for _ in range(copies)]

    core = HandlerDatagrams(Repeat(), DatagramLimits(rate=0, total_rate=0))
    received = dict.fromkeys(range(4), 0)
    sent = dict.fromkeys(range(4), 0)
    now = 0.0
    for who, size, copies, later in steps:
        now += later
        data = bytes([copies]) + b"x" * size
        received[who] += len(data)
        sent[who] += sum(map(len, exchange(core, data, spoofed(who), now)))
        assert sent[who] <= 3 * received[who]


def test_state_stays_bounded_under_spoofed_sources(caplog: pytest.LogCaptureFixture) -> None:
    core = HandlerDatagrams(GreetService(), DatagramLimits(max_peers=1000))
    with caplog.at_level(logging.WARNING, "socketeer.server"):
        for i in range(100_000):
            exchange(core, b"a", spoofed(i), i / 100_000)
            assert core.peer_count <= 1000
    assert core.peer_count == 1000
    # Every source was refused (one byte cannot buy nine), but the log did not flood.
    warnings = throttle_warnings(caplog)
    assert 1 <= len(warnings) <= WARNING_BURST + 1
    assert "more addresses throttled, not logged" not in warnings[0]


def test_the_oldest_address_is_dropped_first() -> None:
    core = HandlerDatagrams(EchoService(), DatagramLimits(max_peers=2))
    exchange(core, b"x", A, 0.0)
    exchange(core, b"x", B, 1.0)
    exchange(core, b"x", A, 2.0)  # A is now the most recent
    exchange(core, b"x", spoofed(1), 3.0)
    assert core.peer(A) is not None
    assert core.peer(B) is None


def test_an_idle_address_is_forgotten_and_starts_over() -> None:
    core = HandlerDatagrams(GreetService(), DatagramLimits(idle=30))
    for _ in range(2):
        exchange(core, b"a", A, 0.0)  # two bytes of credit, not enough for nine
    assert core.get_timer() == 30.0
    core.handle_timer(29.9)
    assert core.peer(A) is not None
    core.handle_timer(30.0)
    assert core.peer(A) is None
    assert core.get_timer() is None
    # The credit went with it: the next byte alone is not enough.
    assert exchange(core, b"a", A, 31.0) == []


@given(st.floats(0, 1e6), st.floats(0.001, 3600))
def test_the_timer_it_asks_for_is_the_time_it_acts(last: float, idle: float) -> None:
    """handle_timer(get_timer()) must do what was due; else an event loop spins on it."""
    core = HandlerDatagrams(EchoService(), DatagramLimits(idle=idle))
    core.receive_datagram(b"x", A, last)
    when = core.get_timer()
    assert when is not None
    core.handle_timer(when)
    assert core.peer(A) is None
    assert core.get_timer() is None


def test_a_validated_peer_has_no_amplification_limit_but_keeps_its_rate() -> None:
    core = HandlerDatagrams(GreetService(), DatagramLimits(rate=1, burst=2))
    assert exchange(core, b"a", A, 0.0) == []
    peer = core.peer(A)
    assert peer is not None
    core.validate(peer)
    assert exchange(core, b"a", A, 0.0) == [b"hello, a!"]
    assert exchange(core, b"a", A, 0.0) == [b"hello, a!"]
    assert exchange(core, b"a", A, 0.0) == []


def test_a_reply_too_large_for_a_datagram_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    class Huge(Service):
        name = "huge"

        def new_handler(self) -> Handler:
            return HugeHandler()

    class HugeHandler(Handler):
        def received(self, message: bytes) -> Sequence[bytes]:
            return [b"x" * (MAX_DATAGRAM + 1), b"small"]

    core = HandlerDatagrams(Huge(), NO_LIMITS)
    assert exchange(core, b"?", A, 0.0) == [b"small"]
    assert "reply to 192.0.2.1:1000 too large for a datagram; dropped" in caplog.text


def test_a_failing_handler_drops_its_datagram_only(caplog: pytest.LogCaptureFixture) -> None:
    class Picky(Service):
        name = "picky"

        def new_handler(self) -> Handler:
            return PickyHandler()

    class PickyHandler(Handler):
        def received(self, message: bytes) -> Sequence[bytes]:
            if message == b"boom":
                raise RuntimeError("boom")
            return [message]

    core = HandlerDatagrams(Picky())
    assert exchange(core, b"boom", A, 0.0) == []
    assert "datagram from 192.0.2.1:1000 failed" in caplog.text
    assert exchange(core, b"fine", A, 0.0) == [b"fine"]


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"rate": -1}, "rates must be >= 0"),
        ({"total_burst": 0}, "bursts must be >= 1"),
        ({"amplification": 0.5}, "amplification must be >= 1"),
        ({"max_peers": 0}, "max_peers must be >= 1"),
        ({"idle": 0}, "idle must be > 0"),
    ],
)
def test_limits_are_checked(limits: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DatagramLimits(**limits)  # type: ignore[arg-type]


# A stop-and-wait protocol over a lossy network ------------------------------------------
#
# DATA is b"D" + 4-byte sequence number + payload; ACK is b"A" + the sequence number.
# The sender keeps one DATA in flight and sends it again every RTO seconds until its ACK
# comes; the receiver delivers each sequence number once, in order, and acknowledges
# everything it gets (a lost ACK is answered when the DATA comes again).

RTO = 0.5


def seq_bytes(seq: int) -> bytes:
    return seq.to_bytes(4, "big")


class Sender(DatagramCore[Peer]):
    def __init__(self, server: Address, chunks: list[bytes], now: float) -> None:
        super().__init__(NO_LIMITS)
        self.chunks = chunks
        self.next = 0
        self.retransmissions = 0
        self.server = self.connect(server, now)
        self.retransmit_at: float | None = None
        self._send_current(now)

    @property
    def done(self) -> bool:
        return self.next == len(self.chunks)

    def new_peer(self, addr: Address, now: float) -> Peer:
        return Peer(addr, self.limits, now)

    def datagram_received(self, peer: Peer, data: bytes, now: float) -> None:
        if peer is self.server and data == b"A" + seq_bytes(self.next) and not self.done:
            self.next += 1
            self.retransmit_at = None
            self._send_current(now)

    def get_timer(self) -> float | None:
        timers = [t for t in (self.retransmit_at, super().get_timer()) if t is not None]
        return min(timers, default=None)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if self.retransmit_at is not None and now >= self.retransmit_at:
            self.retransmissions += 1
            self._send_current(now)

    def peer_forgotten(self, peer: Peer) -> None:
        self.retransmit_at = None  # the server has been silent too long: give up

    def _send_current(self, now: float) -> None:
        if not self.done:
            self.send(self.server, b"D" + seq_bytes(self.next) + self.chunks[self.next], now)
            self.retransmit_at = now + RTO


class Transfer(Peer):
    __slots__ = ("chunks",)

    def __init__(self, addr: Address, limits: DatagramLimits, now: float) -> None:
        super().__init__(addr, limits, now)
        self.chunks: list[bytes] = []


class Receiver(DatagramCore[Transfer]):
    def __init__(self, limits: DatagramLimits | None = None) -> None:
        super().__init__(limits)
        self.delivered: dict[Address, list[bytes]] = {}

    def new_peer(self, addr: Address, now: float) -> Transfer:
        transfer = Transfer(addr, self.limits, now)
        self.delivered[addr] = transfer.chunks
        return transfer

    def datagram_received(self, peer: Transfer, data: bytes, now: float) -> None:
        if len(data) < 5 or data[:1] != b"D":
            return
        seq = int.from_bytes(data[1:5], "big")
        if seq == len(peer.chunks):
            peer.chunks.append(data[5:])
        if seq < len(peer.chunks):
            self.send(peer, b"A" + data[1:5], now)


@dataclass(order=True)
class InFlight:
    arrives: float
    order: int
    data: bytes = field(compare=False)
    source: Address = field(compare=False)
    destination: Address = field(compare=False)


class FakeNet:
    """Carries datagrams between cores by address, dropping, duplicating and reordering them.

    Every choice comes from one seeded random, so a failure replays exactly.  Time is
    simulated: :meth:`run` jumps to the next arrival or timer.
    """

    def __init__(self, seed: int, drop: float = 0.2, dupe: float = 0.1) -> None:
        self.random = random.Random(seed)
        self.drop = drop
        self.dupe = dupe
        self.now = 0.0
        self.cores: dict[Address, DatagramCore[Any]] = {}
        self.in_flight: list[InFlight] = []
        self._order = 0

    def attach(self, addr: Address, core: DatagramCore[Any]) -> None:
        self.cores[addr] = core

    def _deliver(self, packet: InFlight) -> None:
        """Hand ``packet`` to its core as the UDP endpoint does: the quick way if the core can."""
        core = self.cores[packet.destination]
        replies = core.quick_reply(packet.data, packet.source, self.now)
        if replies is None:
            core.receive_datagram(packet.data, packet.source, self.now)
            self._collect(packet.destination)
        else:
            self._collect(packet.destination, [(reply, packet.source) for reply in replies])

    def _collect(self, source: Address, sent: list[tuple[bytes, Address]] | None = None) -> None:
        for data, destination in (sent or []) + self.cores[source].datagrams_to_send(self.now):
            roll = self.random.random()
            if roll < self.drop:
                continue
            copies = 2 if roll < self.drop + self.dupe else 1
            for _ in range(copies):
                # Up to 0.3 s on the wire: later datagrams often overtake earlier ones.
                self._order += 1
                arrives = self.now + 0.01 + self.random.random() * 0.3
                heapq.heappush(
                    self.in_flight, InFlight(arrives, self._order, data, source, destination)
                )
        self.cores[source].prepare(self.now)  # as the I/O layer does, after sending

    def run(self, until: float, max_steps: int = 100_000) -> None:
        for addr in self.cores:
            self._collect(addr)
        for _ in range(max_steps):
            timers = [(t, a) for a, c in self.cores.items() if (t := c.get_timer()) is not None]
            next_timer = min(timers, default=None)
            next_arrival = self.in_flight[0].arrives if self.in_flight else None
            if next_arrival is not None and (next_timer is None or next_arrival <= next_timer[0]):
                packet = heapq.heappop(self.in_flight)
                self.now = packet.arrives
                if self.now > until:
                    return
                if packet.destination in self.cores:
                    self._deliver(packet)
            elif next_timer is not None:
                self.now, addr = next_timer
                if self.now > until:
                    return
                self.cores[addr].handle_timer(self.now)
                self._collect(addr)
            else:
                return
        raise AssertionError("the simulation did not settle")


CLIENT: Address = ("198.51.100.7", 40000)
SERVER: Address = ("203.0.113.1", 6969)


@pytest.mark.parametrize("seed", range(25))
def test_stop_and_wait_gets_everything_through_a_lossy_network(seed: int) -> None:
    net = FakeNet(seed)
    chunks = [f"chunk {i}".encode() for i in range(40)]
    receiver = Receiver()  # the server's default limits
    sender = Sender(SERVER, chunks, net.now)
    net.attach(SERVER, receiver)
    net.attach(CLIENT, sender)
    net.run(until=600.0)
    assert sender.done
    assert receiver.delivered == {CLIENT: chunks}
    assert sender.retransmissions > 0  # the network lost some, and the timer made up for it


def test_a_sender_whose_receiver_is_gone_gives_up_when_idle() -> None:
    net = FakeNet(0, drop=1.0)
    sender = Sender(SERVER, [b"x"], net.now)
    net.attach(CLIENT, sender)
    net.run(until=600.0)
    assert not sender.done
    assert sender.peer(SERVER) is None  # forgotten after the idle time
    # Sent again every RTO until the server had been silent for the idle time.
    assert sender.retransmissions == int(sender.limits.idle / RTO) - 1
