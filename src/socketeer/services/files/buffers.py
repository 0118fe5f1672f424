"""Upload buffers shared by every session of a files service, bounded in all.

A connection that has said nothing costs no buffer: an upload takes a few
when it starts and gives them back when it ends.  The pool never holds
more than ``count`` buffers in all, so the memory the service spends on
receiving is bounded however many clients upload at once; an upload that
finds the pool empty is received through the ordinary read path instead
(slower, still bounded).  Sans-IO.
"""

from __future__ import annotations

__all__ = ["BufferPool"]


class BufferPool:
    """At most ``count`` buffers of ``size`` bytes; at most ``spare`` kept while unused."""

    def __init__(self, size: int, count: int, spare: int = 4) -> None:
        if size < 1 or count < 0 or spare < 0:
            raise ValueError("a buffer pool needs a positive size and counts of at least 0")
        self.size = size
        self.count = count
        self.spare = spare
        self._idle: list[bytearray] = []
        self._lent = 0

    @property
    def lent(self) -> int:
        """Buffers in use now."""
        return self._lent

    @property
    def allocated(self) -> int:
        """Buffers that exist now (in use or kept spare)."""
        return self._lent + len(self._idle)

    def take(self, want: int) -> list[bytearray]:
        """Up to ``want`` buffers (fewer, or none, when the pool is spent)."""
        taken: list[bytearray] = []
        while len(taken) < want and self._lent < self.count:
            taken.append(self._idle.pop() if self._idle else bytearray(self.size))
            self._lent += 1
        return taken

    def give(self, buffers: list[bytearray]) -> None:
        """Return buffers from :meth:`take`; the list is emptied."""
        for buffer in buffers:
            self._lent -= 1
            if len(self._idle) < self.spare:
                self._idle.append(buffer)
        buffers.clear()
