"""The PROXY protocol header (versions 1 and 2) a load balancer puts before a client's bytes.

HAProxy, nginx and AWS's network load balancers can open each connection to
a backend with a header naming the client they relay (``send-proxy``,
``send-proxy-v2``)::

    PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\\r\\n          (version 1: one text line)
    \\r\\n\\r\\n\\x00\\r\\nQUIT\\n + 4 bytes + addresses + TLVs          (version 2: binary)

:class:`ProxyHeaderReader` is fed bytes in any pieces and returns the
:class:`ProxyHeader` once it is whole, with the bytes after it (the client's
own, to pass on).  Anything that is not a valid header raises
:class:`ProxyHeaderError` as soon as it can be told apart: the first byte
that matches neither signature, a version 1 line longer than 107 bytes, a
version 2 header announcing more than ``max_v2_length`` bytes.

``LOCAL`` (version 2: the balancer's own health check) and ``UNKNOWN``
(version 1), and version 2's unspecified or Unix families, carry no client
address: :attr:`ProxyHeader.source` is None and the connection's own
address stands.  TLVs are parsed and kept but not interpreted.  Sans-IO:
the caller keeps the deadline (see ``ServerConfig.proxy_timeout``).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "MAX_V1_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "encode_v1",
    "encode_v2",
]

#: Version 2's 12-byte signature.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 line, CRLF included (the specification's bound).
MAX_V1_LENGTH = 107
#: The longest version 2 address block and TLVs accepted by default.
DEFAULT_MAX_V2_LENGTH = 4096

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16
# version 2 families: address block size and the struct of the addresses
_INET, _INET6, _UNIX = 0x1, 0x2, 0x3
_ADDRESS_SIZES = {_INET: 12, _INET6: 36, _UNIX: 216}

Address = tuple[str, int]


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header; the message says what is wrong."""


@dataclass(frozen=True)
class ProxyHeader:
    """What a load balancer said about the connection it relays."""

    #: 1 or 2.
    version: int
    #: The client's (host, port), or None: the connection's own address stands
    #: (LOCAL, UNKNOWN, an unspecified or Unix family).
    source: Address | None = None
    #: The address the client connected to on the balancer, when given.
    destination: Address | None = None
    #: Version 2's type-length-value extensions, in order.
    tlvs: tuple[tuple[int, bytes], ...] = ()


def _port(text: bytes) -> int:
    if not text.isdigit() or (len(text) > 1 and text.startswith(b"0")) or int(text) > 65535:
        raise ProxyHeaderError(f"PROXY v1: {text[:8]!r} is not a port")
    return int(text)


def _v1_address(text: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        address = None
    if address is None or address.version != version:
        raise ProxyHeaderError(f"PROXY v1: {text[:46]!r} is not an IPv{version} address")
    return str(address)


def _parse_v1(line: bytes) -> ProxyHeader:
    """``line`` without its CRLF."""
    fields = line.split(b" ")
    if len(fields) >= 2 and fields[1] == b"UNKNOWN":
        return ProxyHeader(1)
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("PROXY v1: expected TCP4, TCP6 or UNKNOWN and four fields")
    version = 4 if fields[1] == b"TCP4" else 6
    source = (_v1_address(fields[2], version), _port(fields[4]))
    destination = (_v1_address(fields[3], version), _port(fields[5]))
    return ProxyHeader(1, source, destination)


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    at = 0
    while at < len(data):
        if at + 3 > len(data):
            raise ProxyHeaderError("PROXY v2: a TLV is cut short")
        kind, length = data[at], int.from_bytes(data[at + 1 : at + 3], "big")
        end = at + 3 + length
        if end > len(data):
            raise ProxyHeaderError(f"PROXY v2: TLV 0x{kind:02x} of {length} bytes overruns")
        tlvs.append((kind, data[at + 3 : end]))
        at = end
    return tuple(tlvs)


def _parse_v2(command: int, family: int, body: bytes) -> ProxyHeader:
    size = _ADDRESS_SIZES.get(family, 0)
    if len(body) < size:
        raise ProxyHeaderError(
            f"PROXY v2: {len(body)} bytes cannot hold the addresses ({size} needed)"
        )
    tlvs = _parse_tlvs(body[size:])
    if command == 0x0 or family not in (_INET, _INET6):  # LOCAL, or no IP address
        return ProxyHeader(2, tlvs=tlvs)
    if family == _INET:
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        source = (str(ipaddress.IPv4Address(src)), sport)
        destination = (str(ipaddress.IPv4Address(dst)), dport)
    else:
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        source = (str(ipaddress.IPv6Address(src)), sport)
        destination = (str(ipaddress.IPv6Address(dst)), dport)
    return ProxyHeader(2, source, destination, tlvs)


class ProxyHeaderReader:
    """Reads one PROXY header from the start of a connection, fed in any pieces."""

    def __init__(self, max_v2_length: int = DEFAULT_MAX_V2_LENGTH) -> None:
        self.max_v2_length = max_v2_length
        self._buffer = bytearray()
        self._done = False

    @property
    def buffered(self) -> int:
        """Bytes received and kept so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """Take ``data``; return the header and the bytes after it once whole, else None.

        Raises :class:`ProxyHeaderError` the moment the bytes cannot begin or
        be a valid header.  Feeding after a header was returned is an error.
        """
        if self._done:
            raise ProxyHeaderError("the PROXY header was already read")
        buffer = self._buffer
        buffer += data
        if buffer[:1] == V2_SIGNATURE[:1]:
            result = self._v2()
        elif buffer[:1] == _V1_PREFIX[:1]:
            result = self._v1()
        elif buffer:
            raise ProxyHeaderError("no PROXY header: the connection did not start with one")
        else:
            return None
        if result is not None:
            self._done = True
            buffer.clear()
        return result

    def _v1(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        if not buffer.startswith(_V1_PREFIX[: len(buffer)]):
            raise ProxyHeaderError("no PROXY header: the connection did not start with one")
        end = buffer.find(b"\r\n", 0, MAX_V1_LENGTH)
        if end < 0:
            if len(buffer) >= MAX_V1_LENGTH:
                raise ProxyHeaderError(f"PROXY v1: no CRLF within {MAX_V1_LENGTH} bytes")
            if b"\n" in buffer:
                raise ProxyHeaderError("PROXY v1: a line must end with CRLF")
            return None
        header = _parse_v1(bytes(buffer[:end]))
        return header, bytes(buffer[end + 2 :])

    def _v2(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        if not buffer.startswith(V2_SIGNATURE[: len(buffer)]):
            raise ProxyHeaderError("no PROXY header: the connection did not start with one")
        if len(buffer) < _V2_FIXED:
            if len(buffer) > 12:
                self._check_fixed()
            return None
        command, family, length = self._check_fixed()
        if length > self.max_v2_length:
            raise ProxyHeaderError(
                f"PROXY v2: a header of {length} bytes exceeds the limit of "
                f"{self.max_v2_length} bytes"
            )
        end = _V2_FIXED + length
        if len(buffer) < end:
            return None
        header = _parse_v2(command, family, bytes(buffer[_V2_FIXED:end]))
        return header, bytes(buffer[end:])

    def _check_fixed(self) -> tuple[int, int, int]:
        """Version/command, family/protocol and length, checked as far as they have arrived."""
        buffer = self._buffer
        version_command = buffer[12]
        if version_command >> 4 != 2 or version_command & 0xF not in (0x0, 0x1):
            raise ProxyHeaderError(f"PROXY v2: bad version and command 0x{version_command:02x}")
        if len(buffer) < 14:
            return version_command & 0xF, 0, 0
        family_protocol = buffer[13]
        family, protocol = family_protocol >> 4, family_protocol & 0xF
        if family > _UNIX or protocol > 0x2:
            raise ProxyHeaderError(f"PROXY v2: bad family and protocol 0x{family_protocol:02x}")
        length = int.from_bytes(buffer[14:16], "big") if len(buffer) >= _V2_FIXED else 0
        return version_command & 0xF, family, length


def encode_v1(source: Address | None, destination: Address | None = None) -> bytes:
    """A version 1 header for ``source`` (None: ``UNKNOWN``), as a balancer sends it."""
    if source is None:
        return b"PROXY UNKNOWN\r\n"
    destination = destination or (("::" if ":" in source[0] else "0.0.0.0"), 0)
    family = "TCP6" if ":" in source[0] else "TCP4"
    line = f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    return line.encode("ascii")


def encode_v2(
    source: Address | None,
    destination: Address | None = None,
    tlvs: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """A version 2 header for ``source`` (None: ``LOCAL``), with ``tlvs`` after the addresses."""
    extra = b"".join(bytes([kind]) + len(value).to_bytes(2, "big") + value for kind, value in tlvs)
    if source is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + len(extra).to_bytes(2, "big") + extra
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(
        destination[0] if destination else ("::" if src.version == 6 else "0.0.0.0")
    )
    dport = destination[1] if destination else 0
    family = _INET if src.version == 4 else _INET6
    body = src.packed + dst.packed + struct.pack("!HH", source[1], dport) + extra
    return V2_SIGNATURE + bytes([0x21, family << 4 | 0x1]) + len(body).to_bytes(2, "big") + body
