"""The chat's state: histories bounded in lines and bytes, kept in memory or in SQLite."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from socketeer.services.chat import ChatProtocol, ChatSettings
from socketeer.services.chat.events import Acted, Private, Said
from socketeer.services.chat.history import Line, RecentLines, line_size
from socketeer.services.chat.rendering import deliveries
from socketeer.services.chat.sqlite_state import DATABASE, SQLiteState, StateError
from socketeer.services.chat.state import ChatState, MemoryState
from support import WAIT, ServeProcess, recv_all


def said(n: int, text: str = "", room: str = "#dev") -> Said:
    return Said(1_700_000_000.0 + n, room, "alice", text or f"line {n}")


def test_recent_lines_keep_the_newest_within_lines_and_bytes() -> None:
    recent = RecentLines(3, 1000)
    for n in range(5):
        recent.append(said(n))
    assert [line.text for line in recent] == ["line 2", "line 3", "line 4"]
    big = RecentLines(50, 100)
    for n in range(5):
        big.append(said(n, "x" * 40))
    assert len(big) == 2, "two lines of 45 bytes fit in 100, three do not"
    assert big.bytes == 2 * line_size(said(0, "x" * 40)) <= 100
    big.append(said(9, "y" * 200))
    assert len(big) == 0, "a line over the bound alone is not kept"


def states(tmp_path: Path) -> list[Callable[[int, int, int], ChatState]]:
    return [
        lambda lines, size, rooms: MemoryState(lines, size, rooms),
        lambda lines, size, rooms: SQLiteState(tmp_path / "state", lines, size, rooms),
    ]


@pytest.mark.parametrize("kind", [0, 1], ids=["memory", "sqlite"])
def test_a_state_keeps_each_rooms_newest_lines_and_bounds_them(tmp_path: Path, kind: int) -> None:
    async def main() -> None:
        state = states(tmp_path)[kind](5, 200, 3)
        await state.start()
        try:
            for n in range(20):
                state.append("dev", said(n))
            state.append("ops", Acted(1.0, "#ops", "bob", "waves"))
            assert [line.text for line in await state.recent("dev")] == [
                f"line {n}" for n in range(15, 20)
            ]
            assert await state.recent("ops") == [Acted(1.0, "#ops", "bob", "waves")]
            state.append("dev", said(20, "z" * 190))
            assert [line.text for line in await state.recent("dev")] == ["z" * 190]
            for room in ("a", "b", "c"):
                state.append(room, said(0, room=f"#{room}"))
            assert await state.recent("dev") == [], "past 3 rooms the least recently used go"
            assert await state.recent("nowhere") == []
            message = Private(2.0, "bob", "carol", "call me")
            await state.keep_message("carol", message)
            assert await state.take_messages("carol") == [message]
            assert await state.take_messages("carol") == []
        finally:
            await state.close()

    asyncio.run(main())


def test_sqlite_keeps_history_across_a_restart_and_batches_writes(tmp_path: Path) -> None:
    async def write() -> None:
        state = SQLiteState(tmp_path, 50, 64 * 1024)
        await state.start()
        for n in range(5000):
            state.append("dev", said(n))
        await state.close()

    async def read() -> list[Line]:
        state = SQLiteState(tmp_path, 50, 64 * 1024)
        await state.start()
        try:
            return await state.recent("dev")
        finally:
            await state.close()

    asyncio.run(write())
    assert [line.text for line in asyncio.run(read())] == [f"line {n}" for n in range(4950, 5000)]
    db = sqlite3.connect(tmp_path / DATABASE)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT COUNT(*) FROM lines").fetchone() == (50,), "trimmed on disk"
    finally:
        db.close()


def test_sqlite_writes_lines_said_close_together_in_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A room saying a line every few milliseconds costs a commit per GATHER, not per line."""
    commits: list[int] = []
    write = SQLiteState._write

    def counted(self: SQLiteState, db: sqlite3.Connection, rows: list[Any]) -> None:
        commits.append(len(rows))
        write(self, db, rows)

    monkeypatch.setattr(SQLiteState, "_write", counted)

    async def main() -> None:
        state = SQLiteState(tmp_path, 50, 64 * 1024)
        await state.start()
        try:
            for n in range(10):
                state.append("dev", said(n))
                await asyncio.sleep(0.002)
        finally:
            await state.close()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert sum(commits) == 10
    assert len(commits) <= 3, f"one commit per line or nearly: {commits}"


def test_sqlite_that_cannot_be_opened_says_where_and_why(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    async def main() -> None:
        await SQLiteState(blocker / "state").start()

    with pytest.raises(StateError, match="cannot keep the chat's state in"):
        asyncio.run(main())


class SlowState(MemoryState):
    """A state that never has a room's history at hand: every room must be loaded."""

    def cached(self, room: str) -> None:  # type: ignore[override]
        return None


def test_a_room_whose_history_is_on_its_way_shows_it_before_the_join_notice() -> None:
    state = SlowState()
    state.append("#dev", said(1, "from before the restart"))
    chat: ChatProtocol[str] = ChatProtocol(ChatSettings(rate=0), state)
    (lobby,) = chat.take_loads()
    assert chat.history_loaded(lobby, [], 0.0, 0.0) == []
    alice, _ = chat.connect("alice", 0.0, 0.0)
    chat.receive(alice, b"alice\n/join dev\n", 0.0, 0.0)
    (dev,) = chat.take_loads()
    assert dev.key == "#dev"
    assert dev.loading
    assert chat.receive(alice, b"said after the join\n", 0.0, 0.0) == [], "held"
    loaded = chat.history_loaded(dev, [said(1)], 0.0, 0.0)
    shown = [data.decode() for _, data in deliveries(loaded)]
    assert [line[9:] for text in shown for line in text.splitlines()] == [
        "#dev <alice> line 1",
        "#dev -!- you joined #dev; 1 here: alice",
        "#dev <alice> said after the join",
    ]
    assert alice.held is None


def test_serve_chat_restarted_keeps_its_rooms_history(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    def talk(state: str, *lines: str) -> list[str]:
        """Say ``lines`` to a fresh server as a new member, then quit; what it was sent."""
        server = serve_process("serve", "chat", "127.0.0.1:0", "--state", state, "--grace", "0")
        port = server.endpoints[0].port
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall("".join(f"{line}\n" for line in (*lines, "/quit")).encode())
            received = recv_all(sock).decode().splitlines()
        assert server.stop() == 0
        return [line[9:] for line in received]

    state = str(tmp_path / "kept")
    talk(state, "alice", "/join dev", "said in dev", "/me waves")
    assert talk(state, "bob", "/join dev")[-4:] == [
        "#dev <alice> said in dev",
        "#dev * alice waves",
        "#dev -!- you joined #dev; 1 here: bob",
        "- -!- bye",
    ]
    talk("none", "carol", "/join dev", "said in memory")
    assert talk("none", "dan", "/join dev")[-2:] == [
        "#dev -!- you joined #dev; 1 here: dan",
        "- -!- bye",
    ], "--state none forgets at a restart"
