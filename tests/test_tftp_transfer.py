"""TFTP transfers over the seeded fake network: drops, duplicates, reorders; time simulated."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.datagram import NO_LIMITS, Address, DatagramCore, Peer
from socketeer.services.tftp import Settings, TftpServer
from socketeer.services.tftp.packets import (
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OAck,
    PacketError,
    Request,
    parse,
)
from socketeer.services.tftp.transfer import (
    NetasciiDecoder,
    NetasciiReader,
    Params,
    Receiver,
    Sender,
    Transfer,
    negotiate,
)
from test_datagram import CLIENT, SERVER, FakeNet

RETRY = 1.0

SERVERS: list[TftpServer] = []


@pytest.fixture(autouse=True)
def _close_servers() -> Iterator[None]:
    yield
    while SERVERS:
        SERVERS.pop().close()


def tftp_server(root: Path, **kwargs: Any) -> TftpServer:
    server = TftpServer(root, **kwargs)
    SERVERS.append(server)
    return server


class Client(DatagramCore[Peer]):
    """A TFTP client for one transfer, built on the same transfer machines."""

    def __init__(self, request: Request, now: float, source: bytes = b"") -> None:
        super().__init__(NO_LIMITS)
        self.request = request
        self.server = self.connect(SERVER, now)
        self.source = source
        self.received = bytearray()
        self.transfer: Transfer | None = None
        self.error: ErrorPacket | None = None
        self.tries = 0
        self.retry_at: float | None = now + RETRY
        self.send(self.server, request.encode(), now)

    def new_peer(self, addr: Address, now: float) -> Peer:
        return Peer(addr, self.limits, now)

    def _sink(self, payload: bytes, last: bool) -> None:
        self.received += payload

    def datagram_received(self, peer: Peer, data: bytes, now: float) -> None:
        packet = parse(data)
        if isinstance(packet, ErrorPacket):
            self.error = packet
            self.retry_at = None
            return
        if self.transfer is None:
            self.retry_at = None
            options = packet.options if isinstance(packet, OAck) else {}
            params = Params(
                int(options.get("blksize", 512)), 1.0, int(options.get("windowsize", 1)), 8
            )
            if self.request.write:
                self.transfer = Sender(io.BytesIO(self.source), params, {}, now)
                self.transfer.heard = True
                self._out(self.transfer.start(now), now)
                return
            self.transfer = Receiver(self._sink, params, {}, now)
            self.transfer.heard = True
            if isinstance(packet, OAck):
                self.send(self.server, Ack(0).encode(), now)
                return
        if isinstance(packet, OAck):
            return  # a duplicate: the transfer's timer resends what is missing
        self._out(self.transfer.receive(packet, now), now)

    def _out(self, datagrams: list[bytes], now: float) -> None:
        for datagram in datagrams:
            self.send(self.server, datagram, now)

    def get_timer(self) -> float | None:
        timers = [super().get_timer(), self.retry_at]
        if self.transfer is not None:
            timers.append(self.transfer.deadline())
        return min((t for t in timers if t is not None), default=None)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if self.retry_at is not None and now >= self.retry_at and self.tries < 8:
            self.tries += 1
            self.retry_at = now + RETRY
            self.send(self.server, self.request.encode(), now)
        if self.transfer is not None:
            self._out(self.transfer.handle_timer(now), now)

    @property
    def done(self) -> bool:
        return self.transfer is not None and self.transfer.outcome == ""


def content(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def run(
    tmp_path: Path,
    request: Request,
    seed: int,
    *,
    drop: float = 0.2,
    upload: bytes = b"",
    until: float = 3000.0,
    max_steps: int = 100_000,
) -> tuple[Client, TftpServer]:
    net = FakeNet(seed, drop=drop)
    server = tftp_server(tmp_path, allow_upload=True, settings=Settings(timeout=1.0, retries=8))
    client = Client(request, net.now, upload)
    net.attach(SERVER, server)
    net.attach(CLIENT, client)
    net.run(until=until, max_steps=max_steps)
    return client, server


OPTIONS = [
    {},
    {"blksize": "1428"},
    {"blksize": "100", "windowsize": "8"},
    {"windowsize": "4", "tsize": "0", "timeout": "2"},
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("options", OPTIONS)
def test_a_download_arrives_whole_over_a_lossy_network(
    tmp_path: Path, seed: int, options: dict[str, str]
) -> None:
    data = content(20_000)
    (tmp_path / "f.bin").write_bytes(data)
    client, server = run(tmp_path, Request(False, "f.bin", "octet", options), seed)
    assert client.error is None
    assert bytes(client.received) == data
    assert server.peer_count == 0  # the transfer's state is gone


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("options", OPTIONS)
def test_an_upload_arrives_whole_over_a_lossy_network(
    tmp_path: Path, seed: int, options: dict[str, str]
) -> None:
    data = content(20_000)
    client, _server = run(tmp_path, Request(True, "up.bin", "octet", options), seed, upload=data)
    assert client.error is None
    assert client.done
    assert (tmp_path / "up.bin").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.bin"]  # no partial left


@pytest.mark.parametrize("windowsize", ["1", "16"])
def test_block_numbers_roll_over_past_65535(tmp_path: Path, windowsize: str) -> None:
    data = content(8 * 70_000 + 3)  # 70,001 blocks of 8 bytes
    (tmp_path / "big").write_bytes(data)
    request = Request(False, "big", "octet", {"blksize": "8", "windowsize": windowsize})
    client, _ = run(tmp_path, request, 1, drop=0.01, until=100_000, max_steps=2_000_000)
    assert bytes(client.received) == data


def test_an_upload_rolls_over_too(tmp_path: Path) -> None:
    data = content(8 * 66_000)  # a multiple of the block size: an empty last block
    request = Request(True, "up", "octet", {"blksize": "8", "windowsize": "8"})
    client, _ = run(
        tmp_path, request, 2, drop=0.01, upload=data, until=100_000, max_steps=2_000_000
    )
    assert client.done
    assert (tmp_path / "up").read_bytes() == data


def test_duplicate_acks_never_cause_duplicate_sends() -> None:
    sender = Sender(io.BytesIO(b"x" * 2000), Params(blksize=512), {}, 0.0)
    assert len(sender.start(0.0)) == 1
    assert [parse(d) for d in sender.receive(Ack(1), 0.1)] == [Data(2, b"x" * 512)]
    for _ in range(5):
        assert sender.receive(Ack(1), 0.2) == []  # the Sorcerer's Apprentice would resend 2
    assert sender.sent_blocks == 2


def fast_step(sender: Sender, datagram: bytes, now: float) -> list[bytes]:
    """What a lock-step thread does: the ACK awaited answered first, the bookkeeping after."""
    ahead = sender.lockstep()
    if ahead is not None and datagram == ahead[0]:
        sender.answered(now)
        replies = [ahead[1]]
    else:
        replies = sender.receive(parse(datagram), now)
    sender.prepare()
    return replies


def slow_step(sender: Sender, datagram: bytes, now: float) -> list[bytes]:
    replies = sender.receive(parse(datagram), now)
    sender.prepare()
    return replies


def sender_state(sender: Sender) -> tuple[object, ...]:
    return (
        sender.outcome,
        sender.deadline(),
        sender.heard,
        sender.retries,
        sender.sent_blocks,
        sender.acked_bytes,
    )


@given(
    size=st.integers(0, 30 * 8),
    oack=st.booleans(),
    moves=st.lists(st.sampled_from(["ack", "ack", "ack", "again", "stale", "timer"]), max_size=60),
)
def test_answering_the_awaited_ack_first_sends_and_leaves_what_ack_does(
    size: int, oack: bool, moves: list[str]
) -> None:
    data = content(size)
    params = Params(blksize=8, timeout=1.0, retries=3)
    options = {"blksize": "8"} if oack else {}
    fast = Sender(io.BytesIO(data), params, options, 0.0)
    slow = Sender(io.BytesIO(data), params, options, 0.0)
    assert fast.start(0.0) == slow.start(0.0)
    newest = 0 if oack else 1  # the block the client has last received (0: the OACK)
    now = 0.0
    for move in moves:
        now += 0.25
        if move == "timer":
            due = fast.deadline()
            if due is not None:
                now = max(now, due)
            replies = fast.handle_timer(now)
            assert replies == slow.handle_timer(now)
        else:
            block = {"ack": newest, "again": newest, "stale": newest - 1}[move] % 65_536
            datagram = Ack(block).encode()
            replies = fast_step(fast, datagram, now)
            assert replies == slow_step(slow, datagram, now)
        for reply in replies:
            packet = parse(reply)
            if isinstance(packet, Data):
                newest = packet.block
        assert sender_state(fast) == sender_state(slow)


def test_the_awaited_ack_is_answered_across_the_block_rollover() -> None:
    blocks = 65_540
    data = content(blocks * 8 - 3)
    sender = Sender(io.BytesIO(data), Params(blksize=8), {"blksize": "8"}, 0.0)
    assert isinstance(parse(sender.start(0.0)[0]), OAck)
    received = bytearray()
    answered_first = 0
    block = 0
    while sender.outcome is None:
        if sender.lockstep() is not None:
            answered_first += 1
        replies = fast_step(sender, Ack(block % 65_536).encode(), 0.0)
        if not replies:
            break
        (reply,) = replies
        assert reply[:4] == Data((block + 1) % 65_536, b"").encode()
        received += reply[4:]
        block += 1
    assert sender.outcome == ""
    assert received == data
    assert answered_first == blocks - 1  # all but the ACK of the OACK
    assert sender.acked_bytes == len(data)


def test_a_sender_retries_with_backoff_then_gives_up() -> None:
    sender = Sender(io.BytesIO(b"x" * 2000), Params(timeout=1.0, retries=3), {}, 0.0)
    sender.start(0.0)
    sender.receive(Ack(1), 0.0)  # heard from: the timer retransmits from now on
    times = []
    now = 0.0
    while not sender.finished:
        due = sender.deadline()
        assert due is not None
        now = due
        if sender.handle_timer(now):
            times.append(now)
    assert times == [1.0, 3.0, 7.0]
    assert sender.outcome == "no answer after 3 retries"


def test_an_unanswered_first_reply_is_never_retransmitted() -> None:
    sender = Sender(io.BytesIO(b"x" * 2000), Params(timeout=1.0, retries=3), {}, 0.0)
    sender.start(0.0)
    sent = []
    while not sender.finished:
        due = sender.deadline()
        assert due is not None
        sent += sender.handle_timer(due)
    assert sent == []


@pytest.mark.parametrize(
    "text", [b"", b"a\nb\r\nc\r", b"\r" * 600, b"line\n" * 300, bytes(range(256)) * 3]
)
def test_netascii_round_trips(text: bytes) -> None:
    reader = NetasciiReader(io.BytesIO(text))
    decoder = NetasciiDecoder()
    out = b""
    while block := reader.read(7):
        out += decoder.feed(block)
    assert out + decoder.end() == text


def test_netascii_converts_line_ends() -> None:
    assert NetasciiReader(io.BytesIO(b"a\nb\rc")).read(100) == b"a\r\nb\r\x00c"


def exchange(server: TftpServer, data: bytes, now: float = 0.0) -> list[bytes]:
    server.receive_datagram(data, CLIENT, now)
    return [d for d, _ in server.datagrams_to_send(now)]


def error_code(datagrams: list[bytes]) -> int:
    (packet,) = [parse(d) for d in datagrams]
    assert isinstance(packet, ErrorPacket)
    return packet.code


def test_errors_have_their_codes(tmp_path: Path) -> None:
    (tmp_path / "there").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    server = tftp_server(tmp_path)
    rrq = Request(False, "missing").encode()
    assert error_code(exchange(server, rrq)) == ErrorCode.FILE_NOT_FOUND
    server.handle_timer(0.0)
    for name in ("../etc/passwd", "/etc/passwd", "dir"):
        assert error_code(exchange(server, Request(False, name).encode())) == 2
        server.handle_timer(0.0)
    wrq = Request(True, "new").encode()
    assert error_code(exchange(server, wrq)) == ErrorCode.ACCESS_VIOLATION  # no uploads
    server.handle_timer(0.0)
    writable = tftp_server(tmp_path, allow_upload=True)
    assert error_code(exchange(writable, Request(True, "there").encode())) == 6
    writable.handle_timer(0.0)
    bad = Request(False, "there", "octet", {"blksize": "big"}).encode()
    assert error_code(exchange(writable, bad)) == ErrorCode.OPTION_REFUSED
    assert error_code(exchange(server, b"\x00\x01there\x00mail\x00", 1.0)) == 4
    assert not (tmp_path / "new").exists()


def test_an_upload_never_replaces_a_file_made_at_its_name_meanwhile(tmp_path: Path) -> None:
    server = tftp_server(tmp_path, allow_upload=True)
    assert [parse(d) for d in exchange(server, Request(True, "new").encode())] == [Ack(0)]
    (tmp_path / "new").write_bytes(b"someone else's\n")  # made while the upload runs
    assert error_code(exchange(server, Data(1, b"mine\n").encode(), 0.1)) == 6
    assert (tmp_path / "new").read_bytes() == b"someone else's\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new"]


def test_a_request_gets_one_reply_until_the_peer_answers(tmp_path: Path) -> None:
    """A forged request buys one datagram: no window, no retransmission."""
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    server = tftp_server(tmp_path)
    request = Request(False, "f", "octet", {"windowsize": "16"}).encode()
    assert [parse(d) for d in exchange(server, request)] == [OAck({"windowsize": "16"})]
    sent = 0
    for step in range(1, 200):
        now = step * 0.25
        server.handle_timer(now)
        sent += len(server.datagrams_to_send(now))
    assert sent == 0
    peer = server.peer(CLIENT)
    assert peer is None or not peer.validated


def test_the_ack_validates_and_opens_the_window(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    server = tftp_server(tmp_path)
    exchange(server, Request(False, "f", "octet", {"windowsize": "16"}).encode())
    window = exchange(server, Ack(0).encode(), 0.1)
    assert [parse(d) for d in window] == [Data(n, b"x" * 512) for n in range(1, 17)]
    peer = server.peer(CLIENT)
    assert peer is not None
    assert peer.validated


def test_garbage_from_a_stranger_is_not_answered(tmp_path: Path) -> None:
    server = tftp_server(tmp_path)
    for data in (b"", b"\x00\x04\x00\x01", b"\x00\x09junk", b"\x00\x03\x00\x01data"):
        assert exchange(server, data) == []
    with pytest.raises(PacketError):
        parse(b"\x00\x09junk")


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        ({"windowsize": "16"}, {"windowsize": "16"}),
        ({"windowsize": "1000"}, {"windowsize": "64"}),
        ({"blksize": "65464", "windowsize": "64"}, {"blksize": "65464", "windowsize": "16"}),
        ({"blksize": "4", "windowsize": "0", "timeout": "300"}, {}),
        ({"blksize": "100000", "tsize": "0"}, {"blksize": "65464", "tsize": "5"}),
    ],
)
def test_options_are_lowered_to_what_the_server_allows(
    asked: dict[str, str], granted: dict[str, str]
) -> None:
    """A window never holds more than 1 MiB, whatever the client asks."""
    _, accepted = negotiate(asked, Settings(), 5)
    assert accepted == granted


class Unreadable(io.RawIOBase):
    def read(self, size: int = -1, /) -> bytes:
        raise OSError(5, "Input/output error")


def test_a_file_that_cannot_be_read_ends_its_transfer_with_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 2000)
    server = tftp_server(tmp_path)
    exchange(server, Request(False, "f").encode())
    peer = server.peer(CLIENT)
    assert peer is not None
    assert isinstance(peer.transfer, Sender)
    peer.transfer._source = Unreadable()  # the disk fails under the transfer
    (error,) = exchange(server, Ack(1).encode(), 0.1)
    assert parse(error) == ErrorPacket(0, "cannot read the file: Input/output error")
    assert exchange(server, Ack(1).encode(), 0.2) == []


def test_transfers_beyond_the_limit_are_refused_as_busy(tmp_path: Path) -> None:
    """Each transfer has a port of its own; past max_transfers a request gets error 0."""
    (tmp_path / "f").write_bytes(b"x" * 2000)
    server = tftp_server(tmp_path, settings=Settings(max_transfers=2))
    rrq = Request(False, "f").encode()
    clients = [("127.0.0.1", 40_000 + n) for n in range(3)]
    for client in clients[:2]:
        server.receive_datagram(rrq, client, 0.0)
        ((data, _),) = server.datagrams_to_send(0.0)
        assert isinstance(parse(data), Data)
    server.receive_datagram(rrq, clients[2], 0.0)
    ((busy, _),) = server.datagrams_to_send(0.0)
    assert parse(busy) == ErrorPacket(0, "server busy: 2 transfers at once, try again later")
    assert server.transfers == 2
    for block in range(1, 5):  # the first client's download ends
        server.receive_datagram(Ack(block).encode(), clients[0], 0.1)
    server.datagrams_to_send(0.1)
    server.handle_timer(0.2)  # and it is forgotten, with its port
    assert server.transfers == 1
    server.receive_datagram(rrq, ("127.0.0.1", 40_009), 0.3)
    ((data, _),) = server.datagrams_to_send(0.3)
    assert isinstance(parse(data), Data)
