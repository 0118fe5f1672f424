"""TFTP packets: whatever the bytes, parse() returns a packet or raises PacketError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.services.tftp.packets import (
    Ack,
    Data,
    ErrorPacket,
    OAck,
    Packet,
    PacketError,
    Request,
    parse,
)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_packet_or_the_protocol_error(data: bytes) -> None:
    with contextlib.suppress(PacketError):
        parse(data)


@given(st.binary(max_size=100))
def test_arbitrary_request_bodies_give_a_packet_or_the_protocol_error(body: bytes) -> None:
    for opcode in (b"\x00\x01", b"\x00\x02", b"\x00\x06"):
        with contextlib.suppress(PacketError):
            parse(opcode + body)


text = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn", "Zs")), min_size=1
)
options = st.dictionaries(text.map(str.lower), text, max_size=5)
packets = st.one_of(
    st.builds(Request, st.booleans(), text, st.sampled_from(["octet", "netascii"]), options),
    st.builds(Data, st.integers(0, 65535), st.binary(max_size=1000)),
    st.builds(Ack, st.integers(0, 65535)),
    st.builds(ErrorPacket, st.integers(0, 8), st.text("abc def", max_size=50)),
    st.builds(OAck, options.filter(bool)),
)


@given(packets)
def test_packets_round_trip(packet: Packet) -> None:
    assert parse(packet.encode()) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01",
        b"\x00\x01file\x00",  # no mode
        b"\x00\x01file\x00octet",  # not NUL-terminated
        b"\x00\x01\x00octet\x00",  # empty name
        b"\x00\x01file\x00mail\x00",
        b"\x00\x01file\x00octet\x00blksize\x00",  # option without a value
        b"\x00\x01file\x00octet\x00blksize\x00512\x00BLKSIZE\x00512\x00",  # repeated
        b"\x00\x01fi\x01le\x00octet\x00",  # a control character
        b"\x00\x01\xff\xfe\x00octet\x00",  # not UTF-8
        b"\x00\x04\x00\x01\x00",  # ACK of 5 bytes
        b"\x00\x05\x00\x01oops",  # error not NUL-terminated
        b"\x00\x07\x00\x00",
        b"\x00\x03\x00\x01" + b"x" * 65_465,
    ],
)
def test_malformed_packets_are_refused(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse(data)


def test_a_request_reads_its_options_case_blind() -> None:
    packet = parse(b"\x00\x01a/b\x00OCTET\x00BlkSize\x001428\x00tsize\x000\x00")
    assert packet == Request(False, "a/b", "octet", {"blksize": "1428", "tsize": "0"})
