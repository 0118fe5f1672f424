"""The seed's file downloader, on the same port as the protocol, without I/O.

A connection whose first byte is not 0x00 (every protocol frame starts
with one: control messages are far shorter than 16 MiB, and no file name
contains a NUL) is a plain download: the client sends one file name, ended by
a newline or by half-closing, and receives the file's bytes.  Like the
classic server's single ``recv(1024)``, a name sent with neither (the seed's
client) counts as complete once the client has gone quiet; the session
decides when that is and calls :meth:`PlainRequest.end`.
"""

from __future__ import annotations

from ...errors import FrameTooLarge, RemoteProtocolError
from ...framing import ReceiveBuffer

__all__ = ["MAX_PLAIN_REQUEST", "PlainRequest", "is_protocol_opening"]

MAX_PLAIN_REQUEST = 4096


def is_protocol_opening(first: bytes) -> bool:
    """Whether a connection whose first bytes are ``first`` speaks the protocol."""
    return first[:1] == b"\x00"


class PlainRequest:
    """Collects a plain download's file name."""

    def __init__(self) -> None:
        self._buffer = ReceiveBuffer()
        self.name: str | None = None

    def feed(self, data: bytes) -> str | None:
        """Take bytes; return the requested name once its line is complete."""
        if self.name is not None:
            return self.name
        self._buffer.feed(data)
        try:
            line = self._buffer.take_until(b"\n", MAX_PLAIN_REQUEST, "file name")
        except FrameTooLarge:
            raise RemoteProtocolError(f"file name longer than {MAX_PLAIN_REQUEST} bytes") from None
        return None if line is None else self._named(line)

    def end(self) -> str:
        """The client half-closed or went quiet: what arrived is the name."""
        if self.name is not None:
            return self.name
        return self._named(self._buffer.take())

    def _named(self, line: bytes) -> str:
        text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
        if not text.strip():
            raise RemoteProtocolError("no file name given")
        self.name = text
        return text
