"""A request body of known length, received past the HTTP parser into pooled buffers.

A ``Content-Length`` upload is nothing but bytes: parsing them with h11
would copy each one twice more and allocate a new object per read.  While
a :class:`RawBody` is open, the connection's protocol reads straight into
buffers lent by a :class:`~socketeer.services.files.buffers.BufferPool` (the
files protocol's upload path: :meth:`slot`, :meth:`filled`), or hands over
bytes it read elsewhere (:meth:`add`); the application takes what arrived
(:meth:`take`), writes it, and gives the buffers back (:meth:`release`).
Once the pool is spent, bytes are copied, at most :attr:`high` bytes of
them waiting.  Sans-IO: the owner pauses reading while :attr:`full`.
"""

from __future__ import annotations

from ..services.files.buffers import BufferPool

__all__ = ["RawBody"]

#: Pooled buffers one body may hold at once.
SLOTS = 4
#: Copied bytes that may wait when the pool lent nothing.
UNPOOLED_HIGH = 1024 * 1024


class RawBody:
    """The last ``left`` bytes of a body, received into ``pool``'s buffers where it can."""

    def __init__(self, left: int, pool: BufferPool | None, high: int = UNPOOLED_HIGH) -> None:
        self.left = left
        self.high = high
        self._pool = pool
        self._lent = pool.take(SLOTS) if pool is not None else []
        self._free = list(self._lent)
        self._slot: bytearray | None = None
        self._filled = 0
        self._chunks: list[bytes | memoryview] = []
        self._queued = 0

    @property
    def done(self) -> bool:
        """Whether every byte of the body has arrived and has been taken."""
        return not self.left and not self._chunks and self._slot is None

    @property
    def full(self) -> bool:
        """Whether reading should pause until the application takes what waits."""
        if self._lent:
            return self._slot is None and not self._free
        return self._queued >= self.high

    def slot(self) -> memoryview | None:
        """Where the next read may go (None: into the caller's own buffer, then :meth:`add`)."""
        if not self.left or (self._slot is None and not self._free):
            return None
        if self._slot is None:
            self._slot, self._filled = self._free.pop(), 0
        end = min(len(self._slot), self._filled + self.left)
        return memoryview(self._slot)[self._filled : end]

    def filled(self, count: int) -> bool:
        """``count`` bytes were read into the memory :meth:`slot` gave; whether they now wait.

        A buffer's bytes wait for the application once it is full, or the body complete.
        """
        assert self._slot is not None
        self._filled += count
        self.left -= count
        if self._filled == len(self._slot) or not self.left:
            self.seal()
            return True
        return False

    def add(self, data: bytes) -> bytes:
        """Bytes read elsewhere: the body's part is kept, what follows the body is returned."""
        take = min(len(data), self.left)
        if take:
            self.left -= take
            self._queue(data if take == len(data) else data[:take])
        return data[take:]

    def seal(self) -> None:
        """The buffer being filled waits for the application as it is (the client paused)."""
        if self._slot is None:
            return
        if self._filled:
            self._queue(memoryview(self._slot)[: self._filled])
        else:
            self._free.append(self._slot)
        self._slot = None

    def take(self, limit: int) -> list[bytes | memoryview]:
        """What waits, at least one chunk if any and about ``limit`` bytes; :meth:`release` it."""
        chunks = self._chunks
        taken, size = 0, 0
        while taken < len(chunks) and (taken == 0 or size + len(chunks[taken]) <= limit):
            size += len(chunks[taken])
            taken += 1
        out, self._chunks = chunks[:taken], chunks[taken:]
        self._queued -= size
        return out

    def release(self, chunks: list[bytes | memoryview]) -> None:
        """Chunks from :meth:`take` are written: their buffers take bytes again."""
        for chunk in chunks:
            if isinstance(chunk, memoryview) and any(chunk.obj is b for b in self._lent):
                self._free.append(chunk.obj)  # type: ignore[arg-type]
                chunk.release()

    def close(self) -> None:
        """The body is over (or abandoned): every buffer goes back to the pool."""
        self.left = 0
        self._chunks, self._queued = [], 0
        self._slot, self._free = None, []
        if self._pool is not None:
            self._pool.give(self._lent)

    def _queue(self, chunk: bytes | memoryview) -> None:
        self._chunks.append(chunk)
        self._queued += len(chunk)
