"""What members send, split into lines of text; over-long lines are skipped, not fatal.

A :class:`LineSplitter` is fed bytes in any pieces and returns the lines
they complete, each decoded as UTF-8 (bytes that do not decode become
U+FFFD).  Like the ``auto`` framing (:func:`socketeer.framing.auto_framing`),
it reads a member whose first piece ends with a newline line by line (nc,
telnet, programs), and one whose first piece does not (a tutorial's
``client.send('小明'.encode())``) piece by piece: each piece is a message,
and a piece holding newlines is one message per line.  Control characters,
which could drive other members' terminals, become U+FFFD too; a tab
becomes a space.  A line longer than the limit is
reported as :class:`Overlong` and discarded up to its newline, and the
member keeps talking: never more than the limit is kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...framing import auto_framing

__all__ = ["LineSplitter", "Overlong", "clean_text"]

_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], "\ufffd")
_CONTROLS[ord("\t")] = " "


def clean_text(text: str) -> str:
    """``text`` with every control character replaced (tab by a space, others by U+FFFD)."""
    return text.translate(_CONTROLS)


@dataclass(frozen=True)
class Overlong:
    """A line longer than ``limit`` bytes arrived and was discarded."""

    limit: int


class LineSplitter:
    """Bytes in, lines of clean text out; ``\\n`` or ``\\r\\n`` end a line.

    ``framing`` is ``line``, ``raw`` (each piece is a message) or ``auto``
    (decided by the first piece, as above).
    """

    def __init__(
        self, max_line_length: int, framing: Literal["auto", "line", "raw"] = "auto"
    ) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        self.max_line_length = max_line_length
        #: How the member's bytes are read; None until its first piece decides (``auto``).
        self.framing: Literal["line", "raw"] | None = None if framing == "auto" else framing
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[str | Overlong]:
        """Take the next bytes; return the lines they complete, in order."""
        if self.framing is None:
            if not data:
                return []
            self.framing = auto_framing(data)
        if self.framing == "raw":
            return self._pieces(data)
        out: list[str | Overlong] = []
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return out
            self._discarding = False
            data = data[end + 1 :]
        buffer = self._buffer
        searched = len(buffer)
        buffer += data
        start = 0
        limit = self.max_line_length
        while (end := buffer.find(b"\n", max(start, searched))) >= 0:
            out.append(self._line(buffer, start, end, limit))
            start = end + 1
        if start:
            del buffer[:start]
        if len(buffer) > limit + 1:  # the limit, and the CR of a CRLF still coming
            out.append(Overlong(limit))
            buffer.clear()
            self._discarding = True
        return out

    def end(self) -> list[str | Overlong]:
        """The stream ended: return a last line that had no newline, if any."""
        if not self._buffer:
            return []
        rest = self._line(self._buffer, 0, len(self._buffer), self.max_line_length)
        self._buffer.clear()
        return [rest]

    def _pieces(self, data: bytes) -> list[str | Overlong]:
        """One piece of a member read piece by piece: its lines, the last one unterminated."""
        if data.endswith(b"\n"):
            data = data[:-1]
        limit = self.max_line_length
        return [self._line(part, 0, len(part), limit) for part in data.split(b"\n")]

    @staticmethod
    def _line(buffer: bytes | bytearray, start: int, end: int, limit: int) -> str | Overlong:
        if end > start and buffer[end - 1] == 0x0D:  # CR of a CRLF (telnet)
            end -= 1
        if end - start > limit:
            return Overlong(limit)
        return clean_text(buffer[start:end].decode("utf-8", "replace"))
