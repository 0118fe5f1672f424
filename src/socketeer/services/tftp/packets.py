"""TFTP packets (RFC 1350, with RFC 2347 options): strict parsing and building.

:func:`parse` turns one datagram into a packet (:class:`Request`, :class:`Data`,
:class:`Ack`, :class:`ErrorPacket` or :class:`OAck`) or raises
:class:`PacketError`; nothing else escapes it, whatever the bytes.  Each
packet class builds its own bytes with ``encode()``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "ACK",
    "DATA",
    "ERROR",
    "MAX_BLKSIZE",
    "MIN_BLKSIZE",
    "MODES",
    "OACK",
    "RRQ",
    "WRQ",
    "Ack",
    "Data",
    "ErrorCode",
    "ErrorPacket",
    "OAck",
    "Packet",
    "PacketError",
    "Request",
    "parse",
]

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

#: The block sizes RFC 2348 allows.
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65_464
#: Transfer modes, lower case ("mail" is obsolete and not served).
MODES = ("netascii", "octet")
#: The longest string (file name, option name or value) accepted, in bytes.
MAX_STRING = 1024
#: At most this many options in one request.
MAX_OPTIONS = 16


class ErrorCode:
    """The error codes of RFC 1350 and RFC 2347."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


class PacketError(ValueError):
    """A datagram that is not a well-formed TFTP packet."""


def _strings(body: bytes, what: str) -> list[str]:
    """``body`` as NUL-terminated ASCII strings."""
    if not body.endswith(b"\x00"):
        raise PacketError(f"{what}: not NUL-terminated")
    parts = body[:-1].split(b"\x00")
    strings = []
    for part in parts:
        if len(part) > MAX_STRING:
            raise PacketError(f"{what}: a string longer than {MAX_STRING} bytes")
        try:
            text = part.decode("utf-8")
        except UnicodeDecodeError:
            raise PacketError(f"{what}: not UTF-8") from None
        if not text.isprintable():
            raise PacketError(f"{what}: control characters")
        strings.append(text)
    return strings


def _options(strings: list[str], what: str) -> dict[str, str]:
    if len(strings) % 2:
        raise PacketError(f"{what}: an option without a value")
    if len(strings) > 2 * MAX_OPTIONS:
        raise PacketError(f"{what}: more than {MAX_OPTIONS} options")
    options: dict[str, str] = {}
    for name, value in zip(strings[::2], strings[1::2], strict=True):
        key = name.lower()
        if not key or key in options:
            raise PacketError(f"{what}: an empty or repeated option name")
        options[key] = value
    return options


def _encode_options(options: dict[str, str]) -> bytes:
    return b"".join(f"{k}\x00{v}\x00".encode() for k, v in options.items())


@dataclass(frozen=True)
class Request:
    """A read (RRQ) or write (WRQ) request."""

    write: bool
    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The request's bytes."""
        head = struct.pack("!H", WRQ if self.write else RRQ)
        return head + f"{self.filename}\x00{self.mode}\x00".encode() + _encode_options(self.options)


@dataclass(frozen=True)
class Data:
    """One block of the file."""

    block: int
    payload: bytes

    def encode(self) -> bytes:
        """The packet's bytes."""
        return struct.pack("!HH", DATA, self.block) + self.payload


@dataclass(frozen=True)
class Ack:
    """Acknowledges ``block`` (0: the request or OACK)."""

    block: int

    def encode(self) -> bytes:
        """The packet's bytes."""
        return struct.pack("!HH", ACK, self.block)


@dataclass(frozen=True)
class ErrorPacket:
    """Ends a transfer: ``code`` (see :class:`ErrorCode`) and a message."""

    code: int
    message: str

    def encode(self) -> bytes:
        """The packet's bytes."""
        text = self.message.encode("ascii", "replace")[:200]
        return struct.pack("!HH", ERROR, self.code) + text + b"\x00"


@dataclass(frozen=True)
class OAck:
    """The options the server accepted (RFC 2347)."""

    options: dict[str, str]

    def encode(self) -> bytes:
        """The packet's bytes."""
        return struct.pack("!H", OACK) + _encode_options(self.options)


Packet = Request | Data | Ack | ErrorPacket | OAck


def parse(datagram: bytes) -> Packet:
    """The packet in ``datagram``; :class:`PacketError` if it is not one."""
    if len(datagram) < 4:
        raise PacketError("shorter than any packet")
    (opcode,) = struct.unpack_from("!H", datagram)
    body = datagram[2:]
    if opcode in (RRQ, WRQ):
        what = "request"
        strings = _strings(body, what)
        if len(strings) < 2 or not strings[0]:
            raise PacketError(f"{what}: no file name or mode")
        mode = strings[1].lower()
        if mode not in MODES:
            raise PacketError(f"{what}: unknown mode")
        return Request(opcode == WRQ, strings[0], mode, _options(strings[2:], what))
    if opcode == DATA:
        if len(body) - 2 > MAX_BLKSIZE:
            raise PacketError("data: larger than the largest block")
        (block,) = struct.unpack_from("!H", body)
        return Data(block, body[2:])
    if opcode == ACK:
        if len(body) != 2:
            raise PacketError("ack: not 4 bytes")
        return Ack(struct.unpack("!H", body)[0])
    if opcode == ERROR:
        (code,) = struct.unpack_from("!H", body)
        message = body[2:]
        if not message.endswith(b"\x00") or b"\x00" in message[:-1]:
            raise PacketError("error: message not one NUL-terminated string")
        return ErrorPacket(code, message[:-1].decode("ascii", "replace"))
    if opcode == OACK:
        return OAck(_options(_strings(body, "oack"), "oack"))
    raise PacketError(f"unknown opcode {opcode}")
