"""Chat state that outlives connections, behind one interface, and its in-memory keeper.

A :class:`ChatState` holds what must last longer than a member's connection:
each room's recent lines (its history) and messages kept for members who are
offline.  The chat is one process's event loop, so the interface is shaped
for it:

- :meth:`~ChatState.append` returns at once and never fails: the line is
  written later, in batches, off the event loop (a thread for SQLite, a
  pipelined connection for a network store).  Saying a line never waits for
  a disk or a network.
- :meth:`~ChatState.cached` answers at once when the state holds a room's
  lines in memory, so a room is shown its history without a wait.
- Everything else is ``async`` and may go to a disk or across a network:
  :meth:`~ChatState.recent` fetches a room's history when a room comes back
  into use, :meth:`~ChatState.flush` waits until everything appended is
  written, and the offline messages are kept and taken.

Rooms and nicknames are named by their keys (:func:`.names.name_key`), so two
names that look alike are one room or one person in the store too.  Histories
are bounded by ``lines`` and ``size`` bytes per room (:mod:`.history`), and
the number of rooms whose history is kept by ``rooms`` (the least recently
used go first).  :class:`MemoryState` keeps it all in this process, for as
long as it runs; :mod:`.sqlite_state` keeps it in a file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict, deque

from .events import Private
from .history import Line, RecentLines

__all__ = [
    "DEFAULT_HISTORY_BYTES",
    "DEFAULT_KEPT_ROOMS",
    "MAX_OFFLINE_MESSAGES",
    "ChatState",
    "MemoryState",
]

#: Bytes of history kept per room unless told otherwise.
DEFAULT_HISTORY_BYTES = 64 * 1024
#: Rooms whose history is kept; past it the least recently used room's goes.
DEFAULT_KEPT_ROOMS = 10_000
#: Messages kept for one offline member; past it the oldest go.
MAX_OFFLINE_MESSAGES = 100


class ChatState(ABC):
    """What the chat keeps beyond connections: histories per room, offline messages."""

    def __init__(
        self, lines: int = 50, size: int = DEFAULT_HISTORY_BYTES, rooms: int = DEFAULT_KEPT_ROOMS
    ) -> None:
        if lines < 0 or size < 0 or rooms < 1:
            raise ValueError("lines and size must be >= 0 and rooms >= 1")
        #: The bounds of each room's history.
        self.lines = lines
        self.size = size
        #: How many rooms' histories are kept.
        self.rooms = rooms

    async def start(self) -> None:  # noqa: B027 (a keeper with nothing to open needs nothing)
        """Open the store; called once before anything else."""

    async def close(self) -> None:  # noqa: B027
        """Write what is pending and let the store go."""

    @abstractmethod
    def append(self, room: str, line: Line) -> None:
        """``line`` was said in the room keyed ``room``: keep it (returns at once)."""

    def cached(self, room: str) -> list[Line] | None:
        """The room's history if it is at hand now, oldest first; None: ask :meth:`recent`."""
        return None

    @abstractmethod
    async def recent(self, room: str) -> list[Line]:
        """The room's history, oldest first, including every line appended before the call."""

    async def flush(self) -> None:  # noqa: B027
        """Return once every line appended so far is written."""

    @abstractmethod
    async def keep_message(self, nick: str, message: Private) -> None:
        """Keep ``message`` for the member keyed ``nick``, who is offline."""

    @abstractmethod
    async def take_messages(self, nick: str) -> list[Private]:
        """The messages kept for the member keyed ``nick``, oldest first, now forgotten."""


class MemoryState(ChatState):
    """Chat state in this process's memory: it lasts as long as the process."""

    def __init__(
        self, lines: int = 50, size: int = DEFAULT_HISTORY_BYTES, rooms: int = DEFAULT_KEPT_ROOMS
    ) -> None:
        super().__init__(lines, size, rooms)
        self._histories: OrderedDict[str, RecentLines] = OrderedDict()
        self._messages: dict[str, deque[Private]] = {}

    def append(self, room: str, line: Line) -> None:
        histories = self._histories
        recent = histories.get(room)
        if recent is None:
            recent = histories[room] = RecentLines(self.lines, self.size)
            if len(histories) > self.rooms:
                histories.popitem(last=False)
        else:
            histories.move_to_end(room)
        recent.append(line)

    def cached(self, room: str) -> list[Line]:
        recent = self._histories.get(room)
        return list(recent) if recent is not None else []

    async def recent(self, room: str) -> list[Line]:
        return self.cached(room)

    async def keep_message(self, nick: str, message: Private) -> None:
        kept = self._messages.setdefault(nick, deque(maxlen=MAX_OFFLINE_MESSAGES))
        kept.append(message)

    async def take_messages(self, nick: str) -> list[Private]:
        return list(self._messages.pop(nick, ()))
