"""The PROXY protocol: the header reader (sans-IO, hypothesis) and a server that requires it."""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.access import AccessSources
from socketeer.proxy import (
    MAX_V1_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    encode_v1,
    encode_v2,
)
from support import WAIT, ServeInThread, recv_all

ports = st.integers(0, 65535)
v4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
v6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
addresses = st.one_of(
    st.tuples(st.tuples(v4, ports), st.tuples(v4, ports)),
    st.tuples(st.tuples(v6, ports), st.tuples(v6, ports)),
)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=5)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read(data: bytes, cuts: list[int] = ()) -> tuple[ProxyHeader, bytes]:  # type: ignore[assignment]
    """Feed ``data`` in pieces cut at ``cuts``; the header and what followed it."""
    reader = ProxyHeaderReader()
    pieces = split(data, list(cuts))
    for number, piece in enumerate(pieces):
        result = reader.feed(piece)
        if result is not None:
            header, rest = result
            return header, rest + b"".join(pieces[number + 1 :])
    raise AssertionError("no header")


@given(addresses, st.binary(max_size=50), st.lists(st.integers(0, 200), max_size=6))
def test_v1_reads_back_in_any_pieces(
    pair: tuple[tuple[str, int], tuple[str, int]], after: bytes, cuts: list[int]
) -> None:
    source, destination = pair
    header, rest = read(encode_v1(source, destination) + after, cuts)
    assert header == ProxyHeader(1, source, destination)
    assert rest == after


@given(addresses, tlvs, st.binary(max_size=50), st.lists(st.integers(0, 2000), max_size=6))
def test_v2_reads_back_in_any_pieces(
    pair: tuple[tuple[str, int], tuple[str, int]],
    extensions: list[tuple[int, bytes]],
    after: bytes,
    cuts: list[int],
) -> None:
    source, destination = pair
    header, rest = read(encode_v2(source, destination, tuple(extensions)) + after, cuts)
    assert header == ProxyHeader(2, source, destination, tuple(extensions))
    assert rest == after


def test_unknown_and_local_carry_no_address() -> None:
    assert read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nhi") == (ProxyHeader(1), b"hi")
    assert read(encode_v1(None)) == (ProxyHeader(1), b"")
    assert read(encode_v2(None) + b"hi") == (ProxyHeader(2), b"hi")
    # a LOCAL header may still carry addresses: they are not the client's
    local = bytearray(encode_v2(("192.0.2.1", 5), ("192.0.2.2", 6)))
    local[12] = 0x20
    assert read(bytes(local)) == (ProxyHeader(2), b"")


def test_v2_unspecified_and_unix_families_carry_no_ip_address() -> None:
    unix = V2_SIGNATURE + bytes([0x21, 0x31]) + (216).to_bytes(2, "big") + bytes(216)
    assert read(unix) == (ProxyHeader(2), b"")
    unspecified = V2_SIGNATURE + bytes([0x21, 0x00, 0, 0])
    assert read(unspecified) == (ProxyHeader(2), b"")


@given(st.binary(min_size=1, max_size=200))
def test_anything_else_is_an_error_never_a_header_or_a_wait_forever(data: bytes) -> None:
    """Garbage: refused at once, or (a prefix of a valid header) a bounded wait."""
    reader = ProxyHeaderReader(max_v2_length=256)
    problem = None
    try:
        result = reader.feed(data)
    except ProxyHeaderError as exc:
        problem = str(exc)
    if problem is not None:
        assert "\n" not in problem
        return
    if result is None:  # only a prefix of a signature may wait for more
        assert data.startswith(b"PROXY "[: len(data)]) or data.startswith(
            V2_SIGNATURE[: min(len(data), 12)]
        )
        assert reader.buffered <= max(MAX_V1_LENGTH, 16 + 256)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "did not start with one"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "four fields"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "is not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "must end with CRLF"),
        (b"PROXY " + b"A" * 200, "no CRLF within 107 bytes"),
        (V2_SIGNATURE + bytes([0x11]), "bad version and command"),
        (V2_SIGNATURE + bytes([0x22]), "bad version and command"),
        (V2_SIGNATURE + bytes([0x21, 0x41]), "bad family and protocol"),
        (V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + bytes(4), "cannot hold the addresses"),
    ],
)
def test_bad_headers_are_named(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        ProxyHeaderReader().feed(data)


def test_an_oversized_v2_header_is_refused_from_its_first_16_bytes() -> None:
    """65,535 announced bytes of TLVs: refused before a byte of them is kept."""
    header = V2_SIGNATURE + bytes([0x21, 0x11]) + (65535).to_bytes(2, "big")
    with pytest.raises(ProxyHeaderError, match="65535 bytes exceeds the limit of 4096"):
        ProxyHeaderReader().feed(header)


def test_a_tlv_that_overruns_the_header_is_refused() -> None:
    good = encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), ((0x01, b"h2"),))
    lying = bytearray(good)
    lying[-3:-2] = b"\x09"  # the TLV's length now says 0x0902
    with pytest.raises(ProxyHeaderError, match="overruns"):
        ProxyHeaderReader().feed(bytes(lying))
    cut = bytearray(encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2)) + b"\x01\x00")
    cut[15] += 2  # two bytes of a TLV: no room for its length
    with pytest.raises(ProxyHeaderError, match="cut short"):
        ProxyHeaderReader().feed(bytes(cut))


def test_feeding_after_the_header_is_an_error() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(encode_v1(("192.0.2.1", 1))) is not None
    with pytest.raises(ProxyHeaderError):
        reader.feed(b"more")


# a server with --proxy-protocol ---------------------------------------------------------


def talk(port: int, data: bytes, *, wait_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        if not wait_close:
            return s.recv(100)
        try:
            s.shutdown(socket.SHUT_WR)
            return recv_all(s)
        except ConnectionResetError:  # closed with our bytes unread: nothing was sent
            return b""


def test_the_carried_address_is_logged_limited_and_denied(
    serve_in_thread: ServeInThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "socketeer.server")
    _, (bound,) = serve_in_thread(
        "greet",
        proxy_protocol=True,
        max_conns_per_ip=1,
        access=AccessSources(deny=["203.0.113.0/24"]),
    )
    port = bound.port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as first:
        # the header and the client's first line in one write
        first.sendall(encode_v2(("198.51.100.7", 40001), ("192.0.2.1", 1234)) + b"ann\n")
        reply = b""
        while not reply.endswith(b"ann!\n"):
            reply += first.recv(100)
        assert reply == b"welcome!\nhello, ann!\n"
        # the same client again through the balancer: over --max-conns-per-ip
        again = talk(port, encode_v1(("198.51.100.7", 40002), ("192.0.2.1", 1234)))
        assert again == b"error: too many connections from 198.51.100.7 (at most 1)\n"
        # another client through the same balancer connection address: admitted
        other = talk(port, encode_v1(("198.51.100.8", 40003)) + b"bo\n")
        assert other == b"welcome!\nhello, bo!\n"
    assert talk(port, encode_v2(("203.0.113.9", 5))) == b"", "denied: not a byte"
    logged = caplog.text
    assert "connection from 198.51.100.7:40001" in logged
    assert "refused 203.0.113.9:5: denied (--deny)" in logged


def test_a_local_header_keeps_the_connection_address(
    serve_in_thread: ServeInThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "socketeer.server")
    _, (bound,) = serve_in_thread("greet", proxy_protocol=True)
    assert bound.port is not None
    assert talk(bound.port, encode_v2(None) + b"x\n") == b"welcome!\nhello, x!\n"
    assert "connection from 127.0.0.1:" in caplog.text


@pytest.mark.parametrize(
    "data",
    [
        b"hello\n",  # a client that never heard of a balancer
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",  # a broken header
        V2_SIGNATURE + bytes([0x21, 0x11]) + (65535).to_bytes(2, "big") + bytes(100),
        b"PROXY TCP4 1.2.3.4",  # a header cut off by the end of the stream
    ],
)
def test_a_connection_without_a_valid_header_gets_no_byte(
    serve_in_thread: ServeInThread, data: bytes
) -> None:
    threaded, (bound,) = serve_in_thread("greet", proxy_protocol=True)
    assert bound.port is not None
    assert talk(bound.port, data) == b""
    assert threaded.server.session_count == 0


def test_a_header_a_byte_a_second_is_cut_off_at_the_deadline(
    serve_in_thread: ServeInThread,
) -> None:
    """The deadline is for the whole header, not for each byte."""
    _, (bound,) = serve_in_thread("greet", proxy_protocol=True, proxy_timeout=0.5)
    assert bound.port is not None
    header = encode_v1(("192.0.2.1", 1))
    with socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT) as s:
        start = time.monotonic()
        sent = 0
        while sent < len(header) and not closed_within(s, 0.1):
            s.sendall(header[sent : sent + 1])
            sent += 1
        assert closed_within(s, WAIT)
        assert time.monotonic() - start < 0.5 + 1.0
        assert sent < len(header)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer closes ``sock`` within ``seconds`` (sending nothing before)."""
    ready, _, _ = select.select([sock], [], [], seconds)
    if not ready:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_connections_waiting_for_a_header_are_bounded(serve_in_thread: ServeInThread) -> None:
    threaded, (bound,) = serve_in_thread("greet", proxy_protocol=True, max_conns=3)
    assert bound.port is not None
    waiting = [socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT) for _ in range(3)]
    try:
        for s in waiting:
            s.sendall(b"PROXY ")
        assert talk(bound.port, b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n") == b""
        assert threaded.server.stats.refused["proxy_header"] >= 1
    finally:
        for s in waiting:
            s.close()
