"""What members send, split into lines of text; over-long lines are skipped, not fatal.

A :class:`LineSplitter` is fed bytes in any pieces and returns the lines
they complete, each decoded as UTF-8 (bytes that do not decode become
U+FFFD).  Control characters, which could drive other members' terminals,
become U+FFFD too; a tab becomes a space.  A line longer than the limit is
reported as :class:`Overlong` and discarded up to its newline, and the
member keeps talking: never more than the limit is kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """Bytes in, lines of clean text out; ``\\n`` or ``\\r\\n`` end a line."""

    def __init__(self, max_line_length: int) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        self.max_line_length = max_line_length
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[str | Overlong]:
        """Take the next bytes; return the lines they complete, in order."""
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

    @staticmethod
    def _line(buffer: bytearray, start: int, end: int, limit: int) -> str | Overlong:
        if end > start and buffer[end - 1] == 0x0D:  # CR of a CRLF (telnet)
            end -= 1
        if end - start > limit:
            return Overlong(limit)
        return clean_text(buffer[start:end].decode("utf-8", "replace"))
