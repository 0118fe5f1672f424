"""The chat server over real loopback sockets: TCP, IPv6 and Unix, slow members and floods."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from socketeer import Endpoint
from socketeer.services.chat import ChatService, ChatSettings, parse_line
from support import WAIT, ServeInThread


class Member:
    """A chat member over a blocking socket, reading lines with a deadline."""

    opened: ClassVar[list[Member]] = []

    def __init__(
        self, endpoint: Endpoint, nick: str | None = None, rcvbuf: int = 0, source: str = ""
    ) -> None:
        if endpoint.transport == "unix":
            self.sock = socket.socket(socket.AF_UNIX)
            address: str | tuple[str, int] = endpoint.path or ""
        else:
            host = endpoint.host or "127.0.0.1"
            self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            address = (host, endpoint.port)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.sock.bind((source, 0))
        Member.opened.append(self)
        self.sock.settimeout(WAIT)
        self.sock.connect(address)
        self._buffer = b""
        if nick is not None:
            self.expect("welcome to socketeer chat")
            self.say(nick)
            self.expect("you joined #")

    def say(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def line(self, timeout: float = WAIT) -> str:
        """The next line without its time; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no line within {timeout}s (have {self._buffer!r})") from None
            if not data:
                raise EOFError(self._buffer)
            self._buffer += data
        raw, self._buffer = self._buffer.split(b"\n", 1)
        text = raw.decode()
        parse_line(text)  # every line is in the chat's format
        return text[9:]

    def expect(self, fragment: str, timeout: float = WAIT) -> list[str]:
        """Lines up to and including the first that holds ``fragment``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not seen or fragment not in seen[-1]:
            seen.append(self.line(max(deadline - time.monotonic(), 0.001)))
        return seen

    def nothing_more(self, wait: float = 0.2) -> None:
        """Nothing else arrives within ``wait`` seconds (used after a reply that comes last)."""
        with pytest.raises(AssertionError, match="no line"):
            self.line(wait)

    def read_to_end(self) -> bytes:
        self.sock.settimeout(WAIT)
        chunks = [self._buffer]
        while data := self.sock.recv(1 << 20):
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(autouse=True)
def close_members() -> Iterator[None]:
    yield
    for member in Member.opened:
        member.close()
    Member.opened.clear()


def chat_service(**settings: object) -> ChatService:
    queues = {
        name: settings.pop(name) for name in ("max_queue", "max_queue_total") if name in settings
    }
    return ChatService(ChatSettings(**settings), **queues)  # type: ignore[arg-type]


def endpoints_to_try() -> list[str]:
    found = ["127.0.0.1:0", "unix"]
    if socket.has_ipv6:
        found.append("[::1]:0")
    return found


@pytest.mark.parametrize("where", endpoints_to_try())
def test_every_command_over_the_wire(
    serve_in_thread: ServeInThread, where: str, tmp_path: Path
) -> None:
    address = f"unix://{tmp_path}/chat.sock" if where == "unix" else where
    _, (endpoint,) = serve_in_thread(chat_service(rate=0), [address])
    alice = Member(endpoint, "alice")
    bob = Member(endpoint, "bob")
    assert alice.expect("joined") == ["#lobby -!- bob joined #lobby"]

    alice.say("hello bob")
    assert bob.line() == "#lobby <alice> hello bob"
    assert alice.line() == "#lobby <alice> hello bob"
    bob.say("/me waves")
    assert alice.line() == "#lobby * bob waves"
    assert bob.line() == "#lobby * bob waves"
    bob.say("/msg alice psst")
    assert alice.line() == "@alice <bob> psst"
    assert bob.line() == "@alice <bob> psst"
    alice.say("/who")
    assert alice.line() == "#lobby -!- 2 in #lobby: alice, bob"
    bob.say("/nick robert")
    assert bob.line() == "- -!- you are now known as robert"
    assert alice.line() == "#lobby -!- bob is now known as robert"
    alice.say("/join dev")
    assert alice.line() == "#dev -!- you joined #dev; 1 here: alice"
    bob.say("/rooms")
    assert bob.line() == "- -!- rooms: #dev (1), #lobby (2)"
    alice.say("/online")
    assert alice.line() == "- -!- 2 online: alice (#lobby, #dev), robert (#lobby)"
    alice.say("/switch lobby")
    assert alice.line() == "#lobby -!- you now talk in #lobby"
    alice.say("/leave")
    assert alice.line() == "#lobby -!- you left #lobby; you talk in #dev"
    assert bob.line() == "#lobby -!- alice left #lobby"
    alice.say("/help")
    assert (
        alice.expect("/ping [TOKEN]")[0] == "- -!- commands (anything else is said to your room):"
    )
    alice.say("/bogus")
    assert alice.line() == '- -!- error: unknown command "/bogus"; /help lists the commands'
    alice.say("/ping 7")
    assert alice.line() == "- -!- pong 7"
    bob.say("/quit time for lunch")
    assert bob.line() == "- -!- bye"
    with pytest.raises(EOFError):
        bob.line()
    alice.say("/join lobby")
    assert alice.expect("you joined") == [
        "#lobby <alice> hello bob",
        "#lobby * bob waves",
        "#lobby -!- you joined #lobby; 1 here: alice",
    ]
    alice.nothing_more()
    alice.close()
    bob.close()


def test_a_taken_nick_is_refused_and_another_accepted(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service())
    Member(endpoint, "alice")
    late = Member(endpoint)
    late.expect("welcome")
    late.say("Alice")
    assert late.line() == '- -!- error: the nickname "Alice" is taken; choose another'
    late.say("/nick alice2")
    assert late.expect("you joined")[0] == "- -!- you are now known as alice2"


def test_joins_leaves_and_disconnects_are_announced(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service())
    alice = Member(endpoint, "alice")
    bob = Member(endpoint, "bob")
    carol = Member(endpoint, "carol")
    alice.expect("carol joined")
    bob.sock.close()
    assert alice.line() == "#lobby -!- bob disconnected"
    assert carol.line() == "#lobby -!- bob disconnected"
    carol.sock.shutdown(socket.SHUT_WR)  # nc -N: the end of input ends the membership
    assert alice.line() == "#lobby -!- carol disconnected"
    assert carol.read_to_end() == b""


def test_a_joining_member_sees_the_rooms_last_lines(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(history=2))
    alice = Member(endpoint, "alice")
    for text in ("one", "two", "three"):
        alice.say(text)
        alice.expect(text)
    bob = Member(endpoint)
    bob.expect("welcome")
    bob.say("bob")
    assert bob.expect("you joined") == [
        "- -!- you are now known as bob",
        "#lobby <alice> two",
        "#lobby <alice> three",
        "#lobby -!- you joined #lobby; 2 here: alice, bob",
    ]


def test_utf8_and_undecodable_bytes(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service())
    alice = Member(endpoint, "小明")
    bob = Member(endpoint, "bob")
    alice.say("你好, wörld ✓")
    assert bob.line() == "#lobby <小明> 你好, wörld ✓"
    alice.sock.sendall(b"bad \xff\xc3 bytes\n")
    assert bob.line() == "#lobby <小明> bad \ufffd\ufffd bytes"
    alice.say("still fine")
    assert bob.line() == "#lobby <小明> still fine"


def test_an_over_long_line_is_refused_with_a_notice(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(max_line_length=100))
    alice = Member(endpoint, "alice")
    bob = Member(endpoint, "bob")
    alice.expect("bob joined")
    alice.say("x" * 5000)
    assert alice.line() == "- -!- error: line too long (over 100 bytes); not sent"
    alice.say("short")
    assert bob.line() == "#lobby <alice> short"


def test_a_member_that_never_reads_is_dropped_and_nobody_waits(
    serve_in_thread: ServeInThread,
) -> None:
    """One frozen member; a talker sends 2 MB; a watcher gets every line promptly."""
    _, (endpoint,) = serve_in_thread(chat_service(rate=0, max_queue=64 * 1024))
    frozen = Member(endpoint, "frozen", rcvbuf=4096)
    watcher = Member(endpoint, "watcher")
    talker = Member(endpoint, "talker")
    watcher.expect("talker joined")
    filler = "f" * 1000
    worst = 0.0
    dropped_at = None
    for number in range(2000):
        sent = time.monotonic()
        talker.say(f"{number} {filler}")
        for line in watcher.expect(f"<talker> {number} "):
            if "frozen disconnected" in line:
                dropped_at = number
        worst = max(worst, time.monotonic() - sent)
        talker.expect(f"<talker> {number} ")
        if dropped_at is not None and number > dropped_at + 10:
            break
    assert dropped_at is not None, "the frozen member was never dropped"
    assert worst < 1.0, f"a line took {worst:.3f}s to reach the watcher"
    # The frozen member thaws: it finds its backlog, then the reason, then the end.
    backlog = frozen.read_to_end().decode().splitlines()
    assert backlog[-1].endswith(
        "- -!- error: not reading: more than 65536 bytes waiting to be sent"
    )
    assert len(backlog) > 60
    watcher.say("/who")
    assert watcher.expect("in #lobby:")[-1] == "#lobby -!- 2 in #lobby: talker, watcher"


def test_many_members_that_never_read_cannot_take_more_than_the_total_and_nobody_waits(
    serve_in_thread: ServeInThread,
) -> None:
    """Six frozen members; a talker sends 3 MB; the total budget cuts them, a watcher keeps up."""
    budget = 256 * 1024
    service = chat_service(rate=0, max_queue=1 << 20, max_queue_total=budget)
    _, (endpoint,) = serve_in_thread(service)
    frozen = [Member(endpoint, f"frozen{n}", rcvbuf=4096) for n in range(6)]
    watcher = Member(endpoint, "watcher")
    talker = Member(endpoint, "talker")
    watcher.expect("talker joined")
    filler = "f" * 1000
    worst = 0.0
    most = 0
    cut: list[str] = []
    for number in range(3000):
        sent = time.monotonic()
        talker.say(f"{number} {filler}")
        for line in watcher.expect(f"<talker> {number} "):
            if "disconnected (server output over" in line:
                cut.append(line)
        worst = max(worst, time.monotonic() - sent)
        most = max(most, service.queued)
        if len(cut) == len(frozen):
            break
    assert len(cut) == len(frozen), cut
    assert cut[0].startswith("#lobby -!- frozen")
    assert f"disconnected (server output over {budget} bytes; " in cut[0]
    assert most <= budget
    assert worst < 1.0, f"a line took {worst:.3f}s to reach the watcher"
    for member in frozen:  # cut off without a goodbye: the connection just ends
        with contextlib.suppress(ConnectionResetError):
            assert b"error:" not in member.read_to_end()
    watcher.say("/who")
    assert watcher.expect("in #lobby:")[-1] == "#lobby -!- 2 in #lobby: talker, watcher"


def test_one_address_cannot_take_every_room(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=0, max_rooms=8, max_rooms_per_address=3))
    many = [Member(endpoint, f"m{n}") for n in range(5)]
    for number, member in enumerate(many):
        member.say(f"/join r{number}")
    assert [member.expect("error:")[-1] for member in many[3:]] == [
        "- -!- error: your address already has 3 rooms to itself;"
        " join a room others are in, or leave one of yours"
    ] * 2
    other = Member(endpoint, "other", source="127.0.0.2")
    other.say("/join elsewhere")
    assert other.expect("you joined")[-1] == "#elsewhere -!- you joined #elsewhere; 1 here: other"


def test_the_rate_limit_holds_when_the_wall_clock_jumps(
    serve_in_thread: ServeInThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=0.1, burst=2))
    talker = Member(endpoint, "talker")
    watcher = Member(endpoint, "watcher")
    talker.say("one")
    talker.say("two")
    assert talker.expect("error:")[-1].startswith("- -!- error: you are sending too fast")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    talker.say("three")
    watcher.say("/who")
    lines = watcher.expect("in #lobby:")
    assert not any("three" in line for line in lines), lines


def test_a_flooding_member_is_limited_with_a_notice_while_others_chat(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=5, burst=10))
    flooder = Member(endpoint, "flooder")
    alice = Member(endpoint, "alice")
    bob = Member(endpoint, "bob")
    alice.expect("bob joined")
    stop = threading.Event()
    sent = [0]
    seen_by_bob: list[str] = []

    def flood() -> None:
        with flooder.sock.makefile("wb") as out:
            while not stop.is_set() and sent[0] < 200_000:
                out.write(b"".join(b"spam %d\n" % (sent[0] + n) for n in range(100)))
                sent[0] += 100
            out.flush()

    started = time.monotonic()
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        for number in range(5):
            before = time.monotonic()
            alice.say(f"normal {number}")
            seen_by_bob += bob.expect(f"<alice> normal {number}")
            assert time.monotonic() - before < 1.0
            time.sleep(0.2)  # alice types at a human pace
    finally:
        stop.set()
        thread.join(WAIT)
    elapsed = time.monotonic() - started
    notices = [line for line in flooder.expect("error:") if "error:" in line]
    assert notices == [
        "- -!- error: you are sending too fast (at most 5 lines a second);"
        " lines are dropped until you slow down"
    ]
    bob.say("/who")
    seen_by_bob += bob.expect("in #lobby:")
    got = [line for line in seen_by_bob if "<flooder>" in line]
    assert sent[0] > 1000
    assert 10 <= len(got) <= 10 + 5 * (elapsed + 1)
    assert got[:3] == [
        "#lobby <flooder> spam 0",
        "#lobby <flooder> spam 1",
        "#lobby <flooder> spam 2",
    ]


def test_server_shutdown_tells_members(serve_in_thread: ServeInThread) -> None:
    threaded, (endpoint,) = serve_in_thread(chat_service())
    alice = Member(endpoint, "alice")
    bob = Member(endpoint, "bob")
    asyncio.run_coroutine_threadsafe(threaded.server.stop(0), threaded.loop).result(WAIT)
    assert alice.expect("error:")[-1] == "- -!- error: server is shutting down"
    assert bob.read_to_end().decode().splitlines()[-1].endswith("error: server is shutting down")


def test_an_idle_timeout_when_asked_for_tells_the_room_why(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=0), idle_timeout=0.3)
    quiet = Member(endpoint, "quiet")
    talker = Member(endpoint, "talker")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # the talker keeps talking, the other stays quiet
        talker.say("/who")
        lines = talker.expect("in #lobby")
        if any("quiet disconnected" in line for line in lines):
            break
        time.sleep(0.05)
    assert "#lobby -!- quiet disconnected (idle for 0.3 seconds)" in lines
    assert quiet.read_to_end().decode().endswith("- -!- error: idle for 0.3 seconds\n")


def test_a_failure_inside_one_session_closes_only_that_session(
    serve_in_thread: ServeInThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = chat_service()
    _, (endpoint,) = serve_in_thread(service)
    alice = Member(endpoint, "alice")
    bob = Member(endpoint, "bob")
    real = service.chat.receive

    def receive(member: object, data: bytes, now: float, wall: float) -> object:
        if b"boom" in data:
            raise RuntimeError("bug")
        return real(member, data, now, wall)  # type: ignore[arg-type]

    monkeypatch.setattr(service.chat, "receive", receive)
    bob.say("boom")
    assert bob.read_to_end().decode().endswith("- -!- error: internal server error\n")
    assert alice.expect("bob") == ["#lobby -!- bob joined #lobby"]
    assert alice.expect("bob") == ["#lobby -!- bob disconnected (internal server error)"]
    alice.say("still here")
    assert alice.line() == "#lobby <alice> still here"


# --- tutorial clients, several rooms, hostile members ------------------------------------


def test_a_tutorial_client_that_sends_without_newlines_talks_with_nc_members(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread(chat_service())
    alice = Member(endpoint, "alice")
    client = socket.create_connection(("127.0.0.1", endpoint.port), timeout=WAIT)
    try:
        assert b"welcome to socketeer chat" in client.recv(1024)
        client.send("小明".encode())  # as the tutorials do: no newline
        replies = b""
        while b"you joined" not in replies:
            replies += client.recv(1024)
        assert "- -!- you are now known as 小明" in replies.decode()
        assert alice.line() == "#lobby -!- 小明 joined #lobby"
        client.send("大家好".encode())
        assert alice.line() == "#lobby <小明> 大家好"
        assert client.recv(1024).decode()[9:] == "#lobby <小明> 大家好\n"
        alice.say("hello 小明")
        assert alice.line() == "#lobby <alice> hello 小明"
        assert client.recv(1024).decode()[9:] == "#lobby <alice> hello 小明\n"
        client.send(b"/join dev")
        assert "you joined #dev" in client.recv(1024).decode()
    finally:
        client.close()
    assert alice.line() == "#lobby -!- 小明 disconnected"


def test_a_join_flood_creates_rooms_only_up_to_the_limits_and_others_keep_talking(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=0, max_rooms_per_address=10))
    bob = Member(endpoint, "bob")
    flood = Member(endpoint, "flood")
    bob.expect("flood joined")
    flood.sock.sendall(b"".join(b"/join r%d\n" % n for n in range(1000)) + b"/ping done\n")
    replies = flood.expect("pong done")
    assert sum("you joined #r" in line for line in replies) == 10
    assert sum("your address already has 10 rooms to itself" in line for line in replies) == 990
    bob.say("/rooms")
    assert bob.line().count("#r") == 10
    bob.say("still here")
    assert bob.line() == "#lobby <bob> still here"


def test_huge_room_names_are_refused_with_a_short_error(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=0))
    alice = Member(endpoint, "alice")
    alice.say("/join " + "x" * 4000)
    assert alice.line() == (
        f'- -!- error: "{"x" * 64}..." cannot be a room: a room name has at most 32 characters'
    )
    alice.say("/join " + "y" * 5000)
    assert alice.line() == "- -!- error: line too long (over 4096 bytes); not sent"
    alice.say("/who")
    assert alice.line() == "#lobby -!- 1 in #lobby: alice"


def test_a_member_in_a_thousand_rooms_is_listed_briefly_and_leaves_them_all_at_once(
    serve_in_thread: ServeInThread,
) -> None:
    service = chat_service(
        rate=0, max_rooms=2000, max_rooms_per_address=2000, max_rooms_per_member=1001
    )
    _, (endpoint,) = serve_in_thread(service)
    many = Member(endpoint, "many")
    watcher = Member(endpoint, "watcher", source="127.0.0.2")
    watcher.say("/join r999")
    watcher.expect("you joined #r999")
    many.sock.sendall(b"".join(b"/join r%d\n" % n for n in range(1000)) + b"/ping done\n")
    assert sum("you joined #r" in line for line in many.expect("pong done")) == 1000
    watcher.expect("many joined #r999")
    many.say("/online")
    assert many.line() == (
        "- -!- 2 online: many (#lobby, #r0, #r1, #r2, #r3, #r4, #r5, #r6, #r7, #r8"
        " and 991 more), watcher (#lobby, #r999)"
    )
    many.say("/join one-too-many")
    assert many.line() == "- -!- error: you are in 1001 rooms already; /leave one first"
    started = time.monotonic()
    many.say("/quit")
    assert watcher.expect("many quit") == ["#lobby -!- many quit"]
    assert watcher.line() == "#r999 -!- many quit"
    assert time.monotonic() - started < 5
    watcher.say("/rooms")
    assert watcher.line() == "- -!- rooms: #lobby (1), #r999 (1)"


def test_a_member_may_be_in_at_most_max_rooms_per_member(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(chat_service(rate=0, max_rooms_per_member=3))
    alice = Member(endpoint, "alice")
    for room in ("a", "b"):
        alice.say(f"/join {room}")
        alice.expect(f"you joined #{room}")
    alice.say("/join c")
    assert alice.line() == "- -!- error: you are in 3 rooms already; /leave one first"
    alice.say("/leave a")
    alice.expect("you left #a")
    alice.say("/join c")
    assert alice.expect("you joined #c")
