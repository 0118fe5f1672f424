"""Sans-IO framing: turn a byte stream into messages and messages into bytes.

TCP is a stream: small writes merge and large ones split (the "sticky packet"
problem).  A codec restores message boundaries.  Each codec is fed bytes in
arbitrary pieces with :meth:`Codec.feed`, returns every message completed so
far, and never holds more than its limit of an unfinished message (plus the
piece being fed).  Nothing here touches a socket, a clock or an event loop.

``line``   messages end with a delimiter (``\\n`` by default; a ``\\r`` before it is dropped)
``length`` each message is preceded by its length as a 4-byte big-endian integer
``raw``    each piece fed is a message, as the classic ``recv(1024)`` programs assume
``auto``   ``line`` if the first piece ends with a newline, otherwise ``raw``;
           anything sent before the first piece arrives is sent as a line
"""

from __future__ import annotations

from typing import Literal, Protocol

from .errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_LINE_LENGTH",
    "FRAMINGS",
    "AutoCodec",
    "Codec",
    "Framing",
    "LengthPrefixCodec",
    "LineCodec",
    "RawCodec",
    "ReceiveBuffer",
    "auto_framing",
    "make_codec",
]

Framing = Literal["auto", "raw", "line", "length"]
FRAMINGS: tuple[Framing, ...] = ("auto", "raw", "line", "length")
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_LINE_LENGTH = 64 * 1024
_HEADER = 4


class Codec(Protocol):
    """What every framing offers."""

    max_message_size: int

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the messages they complete.

        Raises :class:`~socketeer.errors.FrameTooLarge` when a message passes the limit.
        """
        ...

    def end(self) -> list[bytes]:
        """The stream ended: return a final unterminated message, if the framing has one.

        Raises :class:`~socketeer.errors.RemoteProtocolError` if the stream stopped
        inside a message that cannot stand on its own.
        """
        ...

    def encode(self, message: bytes) -> bytes:
        """Return the bytes that carry ``message``."""
        ...


class RawCodec:
    """Each piece of the stream is a message; messages are sent as they are."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_message_size = max_message_size

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) > self.max_message_size:
            raise FrameTooLarge(len(data), self.max_message_size)
        return [data] if data else []

    def end(self) -> list[bytes]:
        return []

    def encode(self, message: bytes) -> bytes:
        return message


class ReceiveBuffer:
    """Bytes received but not yet consumed, with the searches readers need.

    Like h11's receive buffer it remembers how far it has already searched
    for a delimiter, so a long line arriving in pieces is never rescanned.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._searched = 0

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes) -> None:
        """Append bytes that arrived."""
        self._data += data

    def take(self, size: int = -1) -> bytes:
        """Remove and return up to ``size`` bytes (all with -1)."""
        data = self._data
        size = len(data) if size < 0 else min(size, len(data))
        chunk = bytes(data[:size])
        del data[:size]
        self._searched = 0
        return chunk

    def peek(self, start: int, size: int) -> bytes | None:
        """The ``size`` bytes from ``start`` without removing them, or None if not all arrived."""
        if len(self._data) < start + size:
            return None
        return bytes(self._data[start : start + size])

    def take_exactly(self, size: int) -> bytes | None:
        """Remove and return exactly ``size`` bytes, or None if fewer have arrived."""
        return self.take(size) if len(self._data) >= size else None

    def take_until(self, delimiter: bytes, limit: int, what: str = "line") -> bytes | None:
        """Remove and return everything up to and including ``delimiter``.

        Returns None if the delimiter has not arrived yet.  Raises
        :class:`~socketeer.errors.FrameTooLarge` once more than ``limit`` bytes
        come before the delimiter, found or not, so memory stays bounded.
        """
        data = self._data
        end = data.find(delimiter, max(0, self._searched - len(delimiter) + 1))
        if end < 0:
            self._searched = len(data)
            # The tail may be the start of a delimiter still arriving: it does not count.
            if len(data) - (len(delimiter) - 1) > limit:
                raise FrameTooLarge(len(data), limit, what)
            return None
        if end > limit:
            raise FrameTooLarge(end, limit, what)
        return self.take(end + len(delimiter))


class LineCodec:
    """Messages separated by ``delimiter``; a line longer than ``max_line_length`` is refused.

    With the default ``\\n`` delimiter a trailing ``\\r`` is removed, so telnet's
    CRLF lines read the same as nc's LF lines (the limit counts that ``\\r``).
    ``send_delimiter`` (default: the delimiter) ends every line sent.
    """

    def __init__(
        self,
        delimiter: bytes = b"\n",
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        *,
        send_delimiter: bytes | None = None,
    ) -> None:
        if not delimiter:
            raise ValueError("line delimiter must not be empty")
        self.delimiter = delimiter
        self.send_delimiter = send_delimiter or delimiter
        self.max_message_size = max_line_length
        self._strip_cr = delimiter == b"\n"
        self._buffer = ReceiveBuffer()

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        self._buffer.feed(data)
        cut = len(self.delimiter)
        limit = self.max_message_size
        try:
            while (line := self._buffer.take_until(self.delimiter, limit)) is not None:
                lines.append(self._strip(line[:-cut]))
        except FrameTooLarge as exc:
            exc.messages = lines
            raise
        return lines

    def _strip(self, line: bytes) -> bytes:
        return line[:-1] if self._strip_cr and line.endswith(b"\r") else line

    def end(self) -> list[bytes]:
        rest = self._strip(self._buffer.take())
        if len(rest) > self.max_message_size:  # a delimiter's start that never finished
            raise FrameTooLarge(len(rest), self.max_message_size, "line")
        return [rest] if rest else []

    def encode(self, message: bytes) -> bytes:
        # The receiver must read back exactly ``message``: no delimiter inside it,
        # none formed with the delimiter that follows, no CR that would be stripped.
        if self.delimiter in message + self.delimiter[:-1]:
            raise LocalProtocolError("a line message cannot contain the line delimiter")
        if self._strip_cr and message.endswith(b"\r"):
            raise LocalProtocolError("a line message cannot end with a carriage return")
        return message + self.send_delimiter


class LengthPrefixCodec:
    """Each message is preceded by its length, a 4-byte big-endian unsigned integer.

    The announced length is checked against ``max_frame_size`` the moment the
    header is complete, before any of the body is kept (as Twisted's
    ``Int32StringReceiver`` does).
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 0 <= max_frame_size < 2**32:
            raise ValueError("max_frame_size must fit in 32 bits")
        self.max_message_size = max_frame_size
        self._header = bytearray()
        self._need = -1  # body bytes expected, or -1 while reading a header
        self._parts: list[bytes] = []
        self._have = 0

    def feed(self, data: bytes) -> list[bytes]:
        # The common case first: nothing pending and exactly one whole frame.
        if self._need < 0 and not self._header and len(data) >= _HEADER:
            length = int.from_bytes(data[:_HEADER], "big")
            if length + _HEADER == len(data) and length <= self.max_message_size:
                return [data[_HEADER:]]
        messages: list[bytes] = []
        try:
            self._feed(data, messages)
        except FrameTooLarge as exc:
            exc.messages = messages
            raise
        return messages

    def _feed(self, data: bytes, messages: list[bytes]) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._need < 0:
                if not self._header and size - pos >= _HEADER:
                    length = int.from_bytes(data[pos : pos + _HEADER], "big")
                    pos += _HEADER
                else:
                    take = _HEADER - len(self._header)
                    self._header += data[pos : pos + take]
                    pos += take
                    if len(self._header) < _HEADER:
                        break
                    length = int.from_bytes(self._header, "big")
                    self._header.clear()
                if length > self.max_message_size:
                    raise FrameTooLarge(length, self.max_message_size, "frame")
                if size - pos >= length:
                    messages.append(data[pos : pos + length])
                    pos += length
                    continue
                self._need = length
            take = min(self._need - self._have, size - pos)
            self._parts.append(data[pos : pos + take])
            self._have += take
            pos += take
            if self._have == self._need:
                messages.append(b"".join(self._parts))
                self._parts.clear()
                self._have, self._need = 0, -1

    def end(self) -> list[bytes]:
        if self._header or self._need >= 0:
            got = len(self._header) if self._need < 0 else self._have
            want = _HEADER if self._need < 0 else self._need
            part = "header" if self._need < 0 else "frame"
            raise RemoteProtocolError(f"stream ended inside a {part}: got {got} of {want} bytes")
        return []

    def encode(self, message: bytes) -> bytes:
        if len(message) > self.max_message_size:
            raise LocalProtocolError(
                f"frame of {len(message)} bytes exceeds the limit of {self.max_message_size} bytes"
            )
        return len(message).to_bytes(_HEADER, "big") + message


class AutoCodec:
    """Guess the framing from the first piece: a trailing newline means lines, else raw.

    This serves both nc/telnet users (who type lines) and the classic
    ``send(b'name')`` / ``recv(1024)`` clients.  Replies to a line session end
    the way the client's first line did (``\\r\\n`` for telnet, ``\\n`` for nc).
    Before the first piece arrives, messages (a greeting) are sent as ``\\n``
    lines: a line client can read them, and a raw client receives the same
    text with a newline after it.
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        self.max_message_size = max_line_length
        self._inner: LineCodec | RawCodec | None = None

    @property
    def mode(self) -> Literal["undecided", "line", "raw"]:
        """Which framing the session turned out to use."""
        if self._inner is None:
            return "undecided"
        return "line" if isinstance(self._inner, LineCodec) else "raw"

    def feed(self, data: bytes) -> list[bytes]:
        if self._inner is None:
            if not data:
                return []
            if auto_framing(data) == "line":
                ending = b"\r\n" if data.endswith(b"\r\n") else b"\n"
                self._inner = LineCodec(
                    max_line_length=self.max_message_size, send_delimiter=ending
                )
            else:
                self._inner = RawCodec(self.max_message_size)
        return self._inner.feed(data)

    def end(self) -> list[bytes]:
        return self._inner.end() if self._inner else []

    def encode(self, message: bytes) -> bytes:
        if self._inner is None:
            return message + b"\n"
        return self._inner.encode(message)


def auto_framing(first: bytes) -> Literal["line", "raw"]:
    """What ``auto`` makes of a session whose first piece is ``first`` (not empty).

    ``line`` if it ends with a newline (nc, telnet, any line-reading client),
    ``raw`` if not: a tutorial client's ``send('小明'.encode())``.
    """
    return "line" if first.endswith(b"\n") else "raw"


def make_codec(
    framing: Framing, max_message_size: int | None = None, delimiter: bytes = b"\n"
) -> Codec:
    """Build a fresh codec by name; ``max_message_size`` overrides the framing's default."""

    def limit(default: int) -> int:
        return default if max_message_size is None else max_message_size

    if framing == "length":
        return LengthPrefixCodec(limit(DEFAULT_MAX_FRAME_SIZE))
    if framing == "line":
        return LineCodec(delimiter, limit(DEFAULT_MAX_LINE_LENGTH))
    if framing == "raw":
        return RawCodec(limit(DEFAULT_MAX_FRAME_SIZE))
    if framing == "auto":
        return AutoCodec(limit(DEFAULT_MAX_LINE_LENGTH))
    raise ValueError(f"unknown framing {framing!r} (choose from {', '.join(FRAMINGS)})")
