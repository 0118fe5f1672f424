"""A room's recent lines, bounded both in lines and in bytes.

:class:`RecentLines` keeps the newest lines said in one room: at most
``lines`` of them and at most ``size`` bytes of text (each line's nickname
and text, UTF-8), whichever bound is reached first; the oldest lines go
first.  Bounding bytes as well as lines keeps 50 lines of 4 KiB from costing
what 50 lines of chat do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from .events import Acted, Said

__all__ = ["Line", "RecentLines", "line_size"]

#: What a room's history holds: what was said and done there.
Line = Said | Acted


def line_size(line: Line) -> int:
    """What ``line`` counts for against a history's byte bound."""
    return len(line.nick.encode("utf-8", "surrogateescape")) + len(
        line.text.encode("utf-8", "surrogateescape")
    )


class RecentLines:
    """The newest lines of one room, at most ``lines`` of them and ``size`` bytes."""

    __slots__ = ("_lines", "_size", "lines", "size")

    def __init__(self, lines: int, size: int, past: Iterable[Line] = ()) -> None:
        if lines < 0 or size < 0:
            raise ValueError("lines and size must be >= 0")
        self.lines = lines
        self.size = size
        self._lines: deque[Line] = deque()
        self._size = 0
        for line in past:
            self.append(line)

    def append(self, line: Line) -> None:
        """Keep ``line`` as the newest; drop the oldest lines until both bounds hold."""
        lines = self._lines
        lines.append(line)
        self._size += line_size(line)
        while lines and (len(lines) > self.lines or self._size > self.size):
            self._size -= line_size(lines.popleft())

    @property
    def bytes(self) -> int:
        """What the kept lines count for against ``size``."""
        return self._size

    def __iter__(self) -> Iterator[Line]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __bool__(self) -> bool:
        return bool(self._lines)
