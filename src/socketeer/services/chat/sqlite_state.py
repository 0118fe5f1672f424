"""Chat state in an SQLite file: histories that survive a restart, written off the event loop.

One thread owns the database connection and does every read and write, in
the order they were asked for, so a read sees every line appended before it.
``SQLiteState.append()`` only puts the line on the thread's queue (a
``SimpleQueue``, no lock held by the loop); woken by a line, the thread
lets :data:`GATHER` seconds pass, then takes everything waiting and writes it
in one transaction, so a busy room costs a few commits a second, not one per
line (nor one wake-up of the thread, and a turn at the GIL, per line).
After each batch it trims the rooms it wrote to their bounds (lines and
bytes) and forgets the least recently used rooms past ``rooms``.

The file is in WAL mode with ``synchronous=NORMAL``: a commit does not wait
for the disk, so a crash of the process loses nothing, while a power cut may
lose the last moments.  A write that fails (disk full, file removed) is
logged once and the chat goes on: history is worth less than the chat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from time import sleep
from typing import TypeVar

from ...errors import SocketeerError
from .events import Acted, Private, Said
from .history import Line, RecentLines, line_size
from .state import DEFAULT_HISTORY_BYTES, DEFAULT_KEPT_ROOMS, MAX_OFFLINE_MESSAGES, ChatState

__all__ = ["DATABASE", "SQLiteState", "StateError"]

log = logging.getLogger("socketeer.server")

#: The database's file name in the state directory.
DATABASE = "chat.sqlite3"
#: Lines written in one transaction at most.
BATCH = 1000
#: Seconds the thread waits after a line wakes it, for more to write with it.
GATHER = 0.05
_SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    place TEXT NOT NULL,
    kind TEXT NOT NULL,
    time REAL NOT NULL,
    nick TEXT NOT NULL,
    text TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_room ON lines (room, id);
CREATE TABLE IF NOT EXISTS rooms (room TEXT PRIMARY KEY, used INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rooms_by_use ON rooms (used);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    nick TEXT NOT NULL,
    time REAL NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_nick ON messages (nick, id);
"""
#: Delete a room's lines older than the newest ones within both bounds.
_TRIM = """
DELETE FROM lines WHERE room = :room AND id < COALESCE((
    SELECT MIN(id) FROM (
        SELECT id,
               SUM(size) OVER (ORDER BY id DESC) AS total,
               ROW_NUMBER() OVER (ORDER BY id DESC) AS n
        FROM lines WHERE room = :room
    ) WHERE total <= :size AND n <= :lines
), 9223372036854775807)
"""

T = TypeVar("T")
_Row = tuple[str, str, str, float, str, str, int]
#: What the thread is asked to do: write a line, run a call, or (None) stop.
_Work = _Row | Callable[[sqlite3.Connection], None] | None


class StateError(SocketeerError):
    """The chat's state cannot be opened (the message says where and why)."""


class SQLiteState(ChatState):
    """Histories and offline messages in ``directory``/chat.sqlite3."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        lines: int = 50,
        size: int = DEFAULT_HISTORY_BYTES,
        rooms: int = DEFAULT_KEPT_ROOMS,
    ) -> None:
        super().__init__(lines, size, rooms)
        self.path = Path(directory) / DATABASE
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._failed = False

    # life ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = await asyncio.to_thread(self._open)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot keep the chat's state in {self.path}: {exc}") from None
        self._thread = threading.Thread(
            target=self._run, args=(db,), name="chat-state", daemon=True
        )
        self._thread.start()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        return db

    async def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._work.put(None)
        await asyncio.to_thread(thread.join)

    # the chat's calls ---------------------------------------------------------------------

    def append(self, room: str, line: Line) -> None:
        kind = "said" if isinstance(line, Said) else "acted"
        self._work.put((room, line.room, kind, line.time, line.nick, line.text, line_size(line)))

    async def recent(self, room: str) -> list[Line]:
        def read(db: sqlite3.Connection) -> list[Line]:
            rows = db.execute(
                "SELECT place, kind, time, nick, text FROM lines"
                " WHERE room = ? ORDER BY id DESC LIMIT ?",
                (room, self.lines),
            ).fetchall()
            kept = RecentLines(self.lines, self.size)
            for place, kind, time, nick, text in reversed(rows):
                made = Said if kind == "said" else Acted
                kept.append(made(time, place, nick, text))
            return list(kept)

        return await self._call(read, [])

    async def flush(self) -> None:
        await self._call(lambda db: None, None)

    async def keep_message(self, nick: str, message: Private) -> None:
        def keep(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT INTO messages (nick, time, sender, recipient, text)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (nick, message.time, message.sender, message.recipient, message.text),
                )
                db.execute(
                    "DELETE FROM messages WHERE nick = ? AND id NOT IN"
                    " (SELECT id FROM messages WHERE nick = ? ORDER BY id DESC LIMIT ?)",
                    (nick, nick, MAX_OFFLINE_MESSAGES),
                )

        await self._call(keep, None)

    async def take_messages(self, nick: str) -> list[Private]:
        def take(db: sqlite3.Connection) -> list[Private]:
            with db:
                rows = db.execute(
                    "SELECT time, sender, recipient, text FROM messages WHERE nick = ? ORDER BY id",
                    (nick,),
                ).fetchall()
                db.execute("DELETE FROM messages WHERE nick = ?", (nick,))
            return [Private(*row) for row in rows]

        return await self._call(take, [])

    # the thread -------------------------------------------------------------------------

    async def _call(self, work: Callable[[sqlite3.Connection], T], failed: T) -> T:
        """Run ``work`` on the state's thread after everything asked before it."""
        if self._thread is None:
            raise StateError("the chat's state is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(result: T | BaseException) -> None:
            if done.done():
                return
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)

        def call(db: sqlite3.Connection) -> None:
            try:
                result: T | BaseException = work(db)
            except sqlite3.Error as exc:
                self._report(exc)
                result = failed
            loop.call_soon_threadsafe(settle, result)

        self._work.put(call)
        return await done

    def _run(self, db: sqlite3.Connection) -> None:
        work = self._work
        held: list[_Work] = []  # taken from the queue while gathering a batch, not yet done
        try:
            while True:
                item = held.pop() if held else work.get()
                if isinstance(item, tuple):
                    sleep(GATHER)  # the GIL is free meanwhile; lines gather
                    rows = [item]
                    while len(rows) < BATCH:
                        try:
                            following = work.get_nowait()
                        except queue.Empty:
                            break
                        if not isinstance(following, tuple):
                            held.append(following)
                            break
                        rows.append(following)
                    self._write(db, rows)
                elif item is None:
                    return
                else:
                    item(db)
        finally:
            db.close()

    def _write(self, db: sqlite3.Connection, rows: list[_Row]) -> None:
        try:
            with db:
                last = db.executemany(
                    "INSERT INTO lines (room, place, kind, time, nick, text, size)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                ).lastrowid
                touched = dict.fromkeys(row[0] for row in rows)
                for room in touched:
                    db.execute(_TRIM, {"room": room, "size": self.size, "lines": self.lines})
                db.executemany(
                    "INSERT INTO rooms (room, used) VALUES (?, ?)"
                    " ON CONFLICT (room) DO UPDATE SET used = excluded.used",
                    [(room, last or 0) for room in touched],
                )
                (count,) = db.execute("SELECT COUNT(*) FROM rooms").fetchone()
                if count > self.rooms:
                    old = db.execute(
                        "SELECT room FROM rooms ORDER BY used LIMIT ?", (count - self.rooms,)
                    ).fetchall()
                    db.executemany("DELETE FROM lines WHERE room = ?", old)
                    db.executemany("DELETE FROM rooms WHERE room = ?", old)
        except sqlite3.Error as exc:
            self._report(exc)

    def _report(self, exc: sqlite3.Error) -> None:
        if not self._failed:
            self._failed = True
            log.error("chat state %s: %s (history may be lost; the chat goes on)", self.path, exc)
