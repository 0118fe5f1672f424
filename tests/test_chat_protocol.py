"""The chat's sans-IO core: every command and rule, driven with byte strings and a fake clock."""

from __future__ import annotations

import datetime
import json
from collections import defaultdict

import pytest

from socketeer.services.chat import ChatProtocol, ChatSettings, parse_line
from socketeer.services.chat.protocol import WELCOME, Delivery
from socketeer.services.chat.rendering import deliveries
from socketeer.services.chat.room import Member
from socketeer.services.chat.state import ChatState, MemoryState

START = 1_700_000_000.0


class Chat:
    """A ChatProtocol whose members are names, with each member's received lines kept."""

    def __init__(self, state: ChatState | None = None, **settings: object) -> None:
        settings.setdefault("rate", 0)  # the clock stands still unless a test moves it
        rules = ChatSettings(**settings)  # type: ignore[arg-type]
        state = state or MemoryState(rules.history, rules.history_bytes)
        self.protocol: ChatProtocol[str] = ChatProtocol(rules, state)
        #: The monotonic clock, and how far the wall clock is from it.
        self.now = START
        self.wall_step = 0.0
        self.members: dict[str, Member[str]] = {}
        self.received: dict[str, list[str]] = defaultdict(list)
        self.writes: dict[str, int] = defaultdict(int)

    @classmethod
    def stateless(cls) -> Chat:
        """A chat without a state: rooms' histories last while the rooms do."""
        chat = cls()
        chat.protocol = ChatProtocol(chat.protocol.settings)
        return chat

    @property
    def wall(self) -> float:
        return self.now + self.wall_step

    def connect(self, peer: str, address: str = "") -> None:
        member, events = self.protocol.connect(peer, self.now, self.wall, address)
        self.members[peer] = member
        self._deliver(deliveries(events))

    def send(self, peer: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self._deliver(
            deliveries(self.protocol.receive(self.members[peer], raw, self.now, self.wall))
        )

    def line(self, peer: str, text: str) -> None:
        self.send(peer, text + "\n")

    def disconnect(self, peer: str, reason: str = "") -> None:
        member = self.members[peer]
        self._deliver(deliveries(self.protocol.disconnect(member, self.wall, reason)))

    def join(self, peer: str, nick: str | None = None, address: str = "") -> None:
        """Connect ``peer``, log in as ``nick`` (default: the peer's name), forget the replies."""
        self.connect(peer, address)
        self.line(peer, nick or peer)
        self.take(peer)

    def _deliver(self, batch: list[Delivery[str]]) -> None:
        for peers, data in batch:
            assert data.endswith(b"\n")
            for peer in peers:
                self.received[peer] += data.decode().splitlines()
                self.writes[peer] += 1

    def take(self, peer: str) -> list[str]:
        """What ``peer`` received since the last take, without the time field."""
        lines, self.received[peer] = self.received[peer], []
        for line in lines:
            assert line[2] == line[5] == ":", line
            assert line[8] == " ", line
        return [line[9:] for line in lines]


@pytest.fixture
def chat() -> Chat:
    chat = Chat()
    chat.join("alice")
    chat.join("bob")
    chat.take("alice")
    return chat


# --- arriving --------------------------------------------------------------------------


def test_a_newcomer_is_asked_for_a_nickname_and_lands_in_the_lobby() -> None:
    chat = Chat()
    chat.connect("alice")
    assert chat.take("alice") == [f"- -!- {WELCOME}"]
    chat.line("alice", "alice")
    assert chat.take("alice") == [
        "- -!- you are now known as alice",
        "#lobby -!- you joined #lobby; 1 here: alice",
    ]


def test_nick_command_also_logs_in_and_others_see_the_join(chat: Chat) -> None:
    chat.connect("carol")
    chat.line("carol", "/nick Carol")
    assert chat.take("carol")[-1] == "#lobby -!- you joined #lobby; 3 here: alice, bob, Carol"
    assert chat.take("alice") == ["#lobby -!- Carol joined #lobby"]
    assert chat.take("bob") == ["#lobby -!- Carol joined #lobby"]


def test_a_taken_nickname_is_refused_with_a_reason_whatever_its_case(chat: Chat) -> None:
    chat.connect("x")
    chat.line("x", "ALICE")
    assert chat.take("x")[-1] == '- -!- error: the nickname "ALICE" is taken; choose another'
    chat.line("x", "/nick alice")
    assert chat.take("x") == ['- -!- error: the nickname "alice" is taken; choose another']
    assert chat.take("alice") == []
    chat.line("x", "alice2")
    assert chat.take("x")[0] == "- -!- you are now known as alice2"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("hello there", "holds only letters, digits, _, - and ."),
        ("-dash", "starts with a letter, a digit or _"),
        ("x" * 25, "at most 24 characters"),
        ("<bob>", "starts with a letter, a digit or _"),
    ],
)
def test_an_invalid_nickname_is_refused_with_the_rule(typed: str, reason: str) -> None:
    chat = Chat()
    chat.connect("x")
    chat.take("x")
    chat.line("x", typed)
    (line,) = chat.take("x")
    assert line.startswith(f'- -!- error: "{typed}" cannot be a nickname: ')
    assert reason in line


@pytest.mark.parametrize(
    ("typed", "looks_like"),
    [
        ("v\u0456ewer", ' (it looks like "viewer")'),  # a Cyrillic i
        ("\uff56\uff49\uff45\uff57\uff45\uff52", ' (it looks like "viewer")'),  # fullwidth
        ("VIEWER", ""),
        ("Vi\u0435wer", ' (it looks like "viewer")'),  # a Cyrillic e and a capital
    ],
)
def test_a_nickname_that_looks_like_one_online_is_refused(typed: str, looks_like: str) -> None:
    chat = Chat()
    chat.join("viewer")
    chat.connect("x")
    chat.line("x", typed)
    assert chat.take("x")[-1] == (
        f'- -!- error: the nickname "{typed}" is taken{looks_like}; choose another'
    )
    chat.join("bob")
    chat.line("bob", f"/nick {typed}")
    assert chat.take("bob")[-1].startswith(f'- -!- error: the nickname "{typed}" is taken')
    chat.disconnect("viewer")
    chat.line("x", typed)
    assert chat.take("x")[0] == f"- -!- you are now known as {typed}"


def test_msg_finds_a_member_by_a_name_that_looks_like_theirs(chat: Chat) -> None:
    chat.line("alice", "/msg \uff42\u043eb hi")  # fullwidth b, Cyrillic o
    assert chat.take("bob") == ["@bob <alice> hi"]


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("bob\u202eevil", "bob\\u202eevil"),  # right-to-left override
        ("b\u200bob", "b\\u200bob"),  # zero-width space
        ("\u2066bob", "\\u2066bob"),  # left-to-right isolate
        ("bob\ufeff", "bob\\ufeff"),  # zero-width no-break space
    ],
)
def test_invisible_and_direction_changing_characters_are_refused_in_nicknames(
    typed: str, shown: str
) -> None:
    chat = Chat()
    chat.connect("x")
    chat.take("x")
    chat.line("x", typed)
    assert chat.take("x") == [
        f'- -!- error: "{shown}" cannot be a nickname:'
        " a nickname cannot hold invisible or direction-changing characters"
    ]


def test_invisible_and_direction_changing_characters_are_shown_escaped_in_messages(
    chat: Chat,
) -> None:
    chat.line("alice", "abc\u202edef zero\u200bwidth")
    assert chat.take("bob") == ["#lobby <alice> abc\\u202edef zero\\u200bwidth"]
    chat.line("alice", "/me waves\u2067")
    assert chat.take("bob") == ["#lobby * alice waves\\u2067"]
    chat.line("alice", "/msg bob \u200fhi")
    assert chat.take("bob") == ["@bob <alice> \\u200fhi"]
    chat.take("alice")
    chat.line("alice", "/msg \u202ezed hi")
    assert chat.take("alice") == ['- -!- error: no one is called "\\u202ezed"']
    chat.line("alice", "/quit bye\u202e")
    assert chat.take("bob") == ["#lobby -!- alice quit (bye\\u202e)"]


def test_a_room_name_that_looks_like_an_existing_one_is_that_room(chat: Chat) -> None:
    chat.line("alice", "/join dev")
    chat.line("bob", "/join #\uff24\u0435v")  # fullwidth D, Cyrillic e
    assert chat.take("bob")[-1] == "#dev -!- you joined #dev; 2 here: alice, bob"
    chat.line("bob", "/join DEV")
    assert chat.take("bob") == ["#dev -!- you now talk in #dev"]
    chat.line("bob", "/leave \u217cobby")  # small roman numeral fifty
    assert chat.take("bob")[-1] == "#lobby -!- you left #lobby; you talk in #dev"
    chat.line("bob", "/join a\u200bb")
    assert chat.take("bob") == [
        '- -!- error: "a\\u200bb" cannot be a room:'
        " a room name cannot hold invisible or direction-changing characters"
    ]


def test_nicknames_may_be_in_any_script() -> None:
    chat = Chat()
    chat.join("a", "小明")
    chat.line("a", "你好")
    assert chat.take("a") == ["#lobby <小明> 你好"]


def test_commands_that_need_a_nickname_say_so() -> None:
    chat = Chat()
    chat.connect("x")
    chat.take("x")
    for command in ("/who", "/online", "/msg bob hi", "/me waves", "/leave dev", "/switch dev"):
        chat.line("x", command)
        assert chat.take("x") == ["- -!- error: choose a nickname first: type it, or /nick NAME"], (
            command
        )


# --- talking -----------------------------------------------------------------------------


def test_a_message_goes_to_everyone_in_the_room_as_one_formatted_line(chat: Chat) -> None:
    chat.line("alice", "hello everyone")
    assert chat.take("alice") == ["#lobby <alice> hello everyone"]
    assert chat.take("bob") == ["#lobby <alice> hello everyone"]


def test_every_line_carries_the_time_the_room_and_the_sender(chat: Chat) -> None:
    chat.now = START + 3723.9
    chat.line("alice", "hi")
    (raw,) = chat.received["bob"]
    line = parse_line(raw)
    assert line.time == datetime.datetime.fromtimestamp(int(chat.now)).strftime("%H:%M:%S")
    assert (line.place, line.kind, line.nick, line.text) == ("#lobby", "said", "alice", "hi")


def test_me_is_an_action(chat: Chat) -> None:
    chat.line("bob", "/me waves at everyone")
    assert chat.take("alice") == ["#lobby * bob waves at everyone"]
    assert chat.take("bob") == ["#lobby * bob waves at everyone"]
    chat.line("bob", "/me")
    assert chat.take("bob") == ["- -!- error: usage: /me ACTION"]


def test_msg_reaches_one_member_and_echoes_to_the_sender(chat: Chat) -> None:
    chat.join("carol")
    chat.take("alice")
    chat.take("bob")
    chat.line("alice", "/msg BOB  psst, over here")
    assert chat.take("bob") == ["@bob <alice> psst, over here"]
    assert chat.take("alice") == ["@bob <alice> psst, over here"]
    assert chat.take("carol") == []


def test_msg_to_nobody_and_without_text(chat: Chat) -> None:
    chat.line("alice", "/msg zed hi")
    assert chat.take("alice") == ['- -!- error: no one is called "zed"']
    chat.line("alice", "/msg bob")
    assert chat.take("alice") == ["- -!- error: usage: /msg NAME TEXT"]


def test_msg_reaches_members_in_other_rooms_and_in_none(chat: Chat) -> None:
    chat.line("bob", "/leave")
    chat.take("bob")
    chat.line("alice", "/msg bob still there?")
    assert chat.take("bob") == ["@bob <alice> still there?"]


def test_double_slash_says_a_line_starting_with_a_slash(chat: Chat) -> None:
    chat.line("alice", "//shrug")
    assert chat.take("bob") == ["#lobby <alice> /shrug"]


def test_empty_lines_are_ignored(chat: Chat) -> None:
    chat.send("alice", b"\n  \r\n\t\n")
    assert chat.take("alice") == []
    assert chat.take("bob") == []


def test_crlf_lines_from_telnet_read_like_lf_lines(chat: Chat) -> None:
    chat.send("alice", b"from telnet\r\n")
    assert chat.take("bob") == ["#lobby <alice> from telnet"]


def test_a_line_may_arrive_in_pieces(chat: Chat) -> None:
    for piece in (b"he", b"llo ", "wörld".encode()[:2], "wörld".encode()[2:], b"\n"):
        chat.send("alice", piece)
    assert chat.take("bob") == ["#lobby <alice> hello wörld"]


def test_undecodable_bytes_are_replaced_and_control_characters_cannot_reach_terminals(
    chat: Chat,
) -> None:
    chat.send("alice", b"caf\xe9 \xff\xfe ok\x1b[2J\x07\tend\n")
    assert chat.take("bob") == ["#lobby <alice> caf\ufffd \ufffd\ufffd ok\ufffd[2J\ufffd end"]
    chat.line("alice", "still here")
    assert chat.take("bob") == ["#lobby <alice> still here"]


def test_an_over_long_line_is_refused_with_a_notice_and_the_member_keeps_talking() -> None:
    chat = Chat(max_line_length=20)
    chat.join("alice")
    chat.join("bob")
    chat.take("alice")
    chat.send("alice", b"x" * 15)
    chat.send("alice", b"y" * 15)  # now over the limit without a newline
    assert chat.take("alice") == ["- -!- error: line too long (over 20 bytes); not sent"]
    chat.send("alice", b"z" * 100 + b"\nshort one\n" + b"w" * 21 + b"\n")
    assert chat.take("bob") == ["#lobby <alice> short one"]
    assert chat.take("alice") == [
        "#lobby <alice> short one",
        "- -!- error: line too long (over 20 bytes); not sent",
    ]
    chat.send("alice", b"a" * 20 + b"\r\n")  # exactly the limit, telnet style
    assert chat.take("bob") == ["#lobby <alice> " + "a" * 20]


# --- nick, join, leave, rooms, who ---------------------------------------------------------


def test_nick_change_is_announced_to_the_room(chat: Chat) -> None:
    chat.line("alice", "/nick alicia")
    assert chat.take("alice") == ["- -!- you are now known as alicia"]
    assert chat.take("bob") == ["#lobby -!- alice is now known as alicia"]
    chat.line("bob", "/msg alicia hi")
    assert chat.take("alice") == ["@alicia <bob> hi"]
    assert chat.take("bob") == ["@alicia <bob> hi"]
    chat.line("bob", "/msg alice hi")
    assert chat.take("bob") == ['- -!- error: no one is called "alice"']
    chat.connect("x")
    chat.line("x", "alice")  # the old name is free again
    assert chat.take("x")[1] == "- -!- you are now known as alice"


def test_nick_change_of_case_only_and_to_the_same_name(chat: Chat) -> None:
    chat.line("alice", "/nick Alice")
    assert chat.take("alice") == ["- -!- you are now known as Alice"]
    chat.line("alice", "/nick Alice")
    assert chat.take("alice") == ['- -!- error: you are already called "Alice"']
    chat.line("alice", "/nick bob")
    assert chat.take("alice") == ['- -!- error: the nickname "bob" is taken; choose another']
    chat.line("alice", "/nick a b")
    assert chat.take("alice") == ["- -!- error: usage: /nick NAME"]


def test_join_adds_a_room_and_lines_go_to_the_room_last_joined(chat: Chat) -> None:
    chat.join("carol")
    chat.take("alice")
    chat.take("bob")
    chat.line("alice", "/join #Dev")
    assert chat.take("alice") == ["#dev -!- you joined #dev; 1 here: alice"]
    assert chat.take("bob") == [], "alice is still in #lobby"
    chat.line("bob", "/join dev")
    assert chat.take("alice") == ["#dev -!- bob joined #dev"]
    assert chat.take("bob") == ["#dev -!- you joined #dev; 2 here: alice, bob"]
    assert chat.take("carol") == []
    chat.line("alice", "in dev")
    assert chat.take("bob") == ["#dev <alice> in dev"]
    assert chat.take("carol") == []
    chat.take("alice")
    chat.line("carol", "in the lobby")
    assert chat.take("alice") == ["#lobby <carol> in the lobby"], "alice hears both rooms"
    assert chat.take("bob") == ["#lobby <carol> in the lobby"]


def test_switch_and_join_of_a_room_one_is_in_change_where_lines_go(chat: Chat) -> None:
    chat.line("alice", "/join dev")
    chat.take("alice")
    chat.line("alice", "/switch #LOBBY")
    assert chat.take("alice") == ["#lobby -!- you now talk in #lobby"]
    chat.line("alice", "back here")
    assert chat.take("bob") == ["#lobby <alice> back here"]
    chat.take("alice")
    chat.line("alice", "/join dev")
    assert chat.take("alice") == ["#dev -!- you now talk in #dev"]
    chat.line("alice", "/me codes")
    assert chat.take("alice") == ["#dev * alice codes"]
    assert chat.take("bob") == []
    chat.line("alice", "/switch ops")
    assert chat.take("alice") == ["- -!- error: you are not in #ops; /join #ops to join it"]
    chat.line("alice", "/switch")
    assert chat.take("alice") == ["- -!- error: usage: /switch ROOM"]


def test_leave_names_a_room_or_leaves_the_current_one(chat: Chat) -> None:
    chat.line("alice", "/join dev")
    chat.line("alice", "/join ops")
    chat.take("alice")
    chat.line("alice", "/leave dev")
    assert chat.take("alice") == ["#dev -!- you left #dev; you talk in #ops"]
    chat.line("alice", "/part")
    assert chat.take("alice") == ["#ops -!- you left #ops; you talk in #lobby"]
    chat.line("alice", "/leave dev")
    assert chat.take("alice") == ["- -!- error: you are not in #dev; /join #dev to join it"]
    chat.line("alice", "still here")
    assert chat.take("bob") == ["#lobby <alice> still here"]


def test_nick_changes_and_quits_are_told_in_every_room_of_the_member(chat: Chat) -> None:
    chat.join("carol")
    for name in ("alice", "bob"):
        chat.line(name, "/join dev")
    for name in ("alice", "bob", "carol"):
        chat.take(name)
    chat.line("alice", "/nick alicia")
    assert chat.take("bob") == [
        "#lobby -!- alice is now known as alicia",
        "#dev -!- alice is now known as alicia",
    ]
    assert chat.take("carol") == ["#lobby -!- alice is now known as alicia"]
    chat.line("alice", "/quit gone")
    assert chat.take("bob") == ["#lobby -!- alicia quit (gone)", "#dev -!- alicia quit (gone)"]
    assert chat.take("carol") == ["#lobby -!- alicia quit (gone)"]


def test_who_names_a_room_and_online_lists_everyone_with_their_rooms(chat: Chat) -> None:
    chat.join("carol")
    chat.line("alice", "/join dev")
    chat.line("carol", "/leave")
    chat.take("alice")
    chat.line("alice", "/who")
    assert chat.take("alice") == ["#dev -!- 1 in #dev: alice"]
    chat.line("alice", "/who lobby")
    assert chat.take("alice") == ["#lobby -!- 2 in #lobby: alice, bob"]
    chat.line("alice", "/who nowhere")
    assert chat.take("alice") == [
        "- -!- error: there is no room called #nowhere; /rooms lists them"
    ]
    expected = "- -!- 3 online: alice (#lobby, #dev), bob (#lobby), carol (no room)"
    chat.take("carol")
    chat.line("alice", "/online")
    assert chat.take("alice") == [expected]
    chat.line("carol", "/who *")
    assert chat.take("carol") == [expected]


def test_join_errors(chat: Chat) -> None:
    chat.line("alice", "/join no/slashes")
    assert chat.take("alice") == [
        '- -!- error: "no/slashes" cannot be a room: a room name holds only letters, digits,'
        " _, - and ."
    ]
    chat.line("alice", "/join")
    assert chat.take("alice") == ["- -!- error: usage: /join ROOM"]


def test_there_is_a_limit_on_rooms() -> None:
    chat = Chat(max_rooms=2)
    chat.join("a")
    chat.join("b")
    chat.line("a", "/join one")
    chat.take("a")
    chat.line("b", "/join two")
    assert chat.take("b")[-1:] == ["- -!- error: there are 2 rooms already; /rooms lists them"]


def test_leave_and_then_messages_go_nowhere(chat: Chat) -> None:
    chat.line("alice", "/leave")
    assert chat.take("alice") == [
        "#lobby -!- you left #lobby; you are in no room now (/join ROOM to join one)"
    ]
    assert chat.take("bob") == ["#lobby -!- alice left #lobby"]
    chat.line("alice", "anyone?")
    assert chat.take("alice") == ["- -!- error: you are in no room; /join ROOM to join one"]
    assert chat.take("bob") == []
    for command in ("/leave", "/who", "/me waves"):
        chat.line("alice", command)
        assert chat.take("alice")[0].startswith("- -!- error: you are in no room"), command
    chat.line("alice", "/part now and then")
    assert chat.take("alice") == ["- -!- error: usage: /leave [ROOM]"]


def test_rooms_lists_every_room_with_its_count_and_empty_rooms_vanish(chat: Chat) -> None:
    chat.line("alice", "/join dev")
    chat.line("alice", "/rooms")
    assert chat.take("alice")[-1] == "- -!- rooms: #dev (1), #lobby (2)"
    chat.line("alice", "/leave")
    chat.line("alice", "/list")
    assert chat.take("alice")[-1] == "- -!- rooms: #lobby (2)"
    chat.line("alice", "/leave")
    chat.line("bob", "/leave")
    chat.line("bob", "/rooms")
    assert chat.take("bob")[-1] == "- -!- rooms: #lobby (0)"


def test_who_lists_the_room(chat: Chat) -> None:
    chat.join("Carl")
    chat.line("bob", "/who")
    assert chat.take("bob")[-1] == "#lobby -!- 3 in #lobby: alice, bob, Carl"
    chat.line("bob", "/names")
    assert chat.take("bob") == ["#lobby -!- 3 in #lobby: alice, bob, Carl"]
    chat.line("bob", "/who is there")
    assert chat.take("bob") == ["- -!- error: usage: /who [ROOM]"]


def test_joining_a_crowded_room_lists_twenty_names_and_the_rest_by_count() -> None:
    chat = Chat()
    for number in range(25):
        chat.join(f"m{number:02}")
    chat.connect("last")
    chat.line("last", "zed")
    joined = chat.take("last")[-1]
    assert joined.startswith("#lobby -!- you joined #lobby; 26 here: m00, m01,")
    assert joined.endswith("m19 and 6 more (/who lists everyone)")


def test_help_lists_every_command(chat: Chat) -> None:
    chat.writes["alice"] = 0
    chat.line("alice", "/HELP")
    lines = chat.take("alice")
    assert lines[0] == "- -!- commands (anything else is said to your room):"
    listed = [line.split()[2] for line in lines[1:]]
    assert listed == [
        "/nick",
        "/join",
        "/switch",
        "/leave",
        "/rooms",
        "/who",
        "/online",
        "/msg",
        "/me",
        "/help",
        "/quit",
        "/format",
        "/ping",
    ]
    assert chat.writes["alice"] == 1, "help arrives as one write"


def test_unknown_commands_say_how_to_find_the_real_ones(chat: Chat) -> None:
    chat.line("alice", "/frobnicate now")
    assert chat.take("alice") == [
        '- -!- error: unknown command "/frobnicate"; /help lists the commands'
    ]
    chat.line("alice", "/")
    assert chat.take("alice")[0].startswith('- -!- error: a command follows the "/"')


# --- leaving -----------------------------------------------------------------------------


def test_quit_says_bye_announces_and_finishes(chat: Chat) -> None:
    chat.line("alice", "/quit see you")
    assert chat.take("alice") == ["- -!- bye"]
    assert chat.take("bob") == ["#lobby -!- alice quit (see you)"]
    assert chat.members["alice"].finished
    chat.line("bob", "/exit")
    assert chat.take("bob") == ["- -!- bye"]
    assert chat.protocol.member_count == 0


def test_a_disconnect_is_announced_once(chat: Chat) -> None:
    chat.disconnect("alice")
    chat.disconnect("alice")
    assert chat.take("bob") == ["#lobby -!- alice disconnected"]
    chat.disconnect("bob", "not reading")
    assert chat.protocol.member_count == 0


def test_a_disconnect_before_login_is_silent(chat: Chat) -> None:
    chat.connect("x")
    chat.disconnect("x")
    assert chat.take("alice") == []


def test_end_of_input_acts_on_a_last_line_without_newline_then_leaves(chat: Chat) -> None:
    chat.send("alice", b"last words")
    member = chat.members["alice"]
    chat._deliver(deliveries(chat.protocol.end_of_input(member, chat.now, chat.wall)))
    assert chat.take("bob") == ["#lobby <alice> last words", "#lobby -!- alice disconnected"]


def test_lines_after_quit_in_the_same_piece_are_ignored(chat: Chat) -> None:
    chat.send("alice", b"/quit\nghost message\n")
    assert chat.take("bob") == ["#lobby -!- alice quit"]


# --- history -----------------------------------------------------------------------------


def test_a_joining_member_sees_the_last_lines_in_one_write() -> None:
    chat = Chat(history=3)
    chat.join("alice")
    for number in range(5):
        chat.line("alice", f"message {number}")
    chat.line("alice", "/me stretches")
    chat.line("alice", "/msg alice note to self")  # private: not history
    chat.connect("bob")
    chat.take("bob")
    chat.writes["bob"] = 0
    chat.line("bob", "bob")
    assert chat.take("bob") == [
        "- -!- you are now known as bob",
        "#lobby <alice> message 3",
        "#lobby <alice> message 4",
        "#lobby * alice stretches",
        "#lobby -!- you joined #lobby; 2 here: alice, bob",
    ]
    assert chat.writes["bob"] == 3


def test_history_keeps_the_original_times_and_can_be_off() -> None:
    chat = Chat(history=5)
    chat.join("alice")
    chat.line("alice", "early")
    said = chat.received["alice"][-1]
    chat.now += 3600
    chat.join("bob")
    chat.connect("carol")
    chat.line("carol", "carol")
    assert said in chat.received["carol"]
    quiet = Chat(history=0)
    quiet.join("alice")
    quiet.line("alice", "early")
    quiet.connect("bob")
    quiet.line("bob", "bob")
    assert all("early" not in line for line in quiet.take("bob"))


def test_each_room_has_its_own_history() -> None:
    chat = Chat()
    chat.join("alice")
    chat.line("alice", "in the lobby")
    chat.line("alice", "/join dev")
    chat.line("alice", "in dev")
    chat.connect("bob")
    chat.line("bob", "bob")
    bob = chat.take("bob")
    assert "#lobby <alice> in the lobby" in bob
    assert "in dev" not in " ".join(bob)
    chat.line("bob", "/join dev")
    assert chat.take("bob")[0] == "#dev <alice> in dev"


def test_an_emptied_room_keeps_its_history_in_the_state_but_not_without_one() -> None:
    for state, kept in ((None, ["#dev <alice> dev words"]), (Chat.stateless, [])):
        chat = Chat() if state is None else state()
        chat.join("alice")
        chat.line("alice", "lobby words")
        chat.line("alice", "/join dev")
        chat.line("alice", "dev words")
        chat.line("alice", "/leave")
        chat.connect("bob")
        chat.line("bob", "bob")
        assert "#lobby <alice> lobby words" in chat.take("bob")
        chat.line("bob", "/join dev")
        assert chat.take("bob") == [*kept, "#dev -!- you joined #dev; 1 here: bob"]


def test_one_address_cannot_take_every_room_and_others_still_can_create_them() -> None:
    chat = Chat(max_rooms=20, max_rooms_per_address=3)
    replies = []
    for number in range(10):
        chat.join(f"m{number}", address="10.0.0.1")
        chat.line(f"m{number}", f"/join r{number}")
        replies.append(chat.take(f"m{number}")[-1])
    assert replies[:3] == [f"#r{n} -!- you joined #r{n}; 1 here: m{n}" for n in range(3)]
    assert (
        replies[3:]
        == [
            "- -!- error: your address already has 3 rooms to itself;"
            " join a room others are in, or leave one of yours"
        ]
        * 7
    )
    chat.join("other", address="10.0.0.2")
    chat.line("other", "/join mine")
    assert chat.take("other")[-1] == "#mine -!- you joined #mine; 1 here: other"
    # A room someone else is in is no longer held by the address alone.
    chat.line("other", "/join r0")
    chat.line("m9", "/join r9")
    assert chat.take("m9")[-1] == "#r9 -!- you joined #r9; 1 here: m9"
    # Leaving a room gives the address its place back.
    chat.line("m1", "/leave")
    chat.line("m8", "/join r8")
    assert chat.take("m8")[-1] == "#r8 -!- you joined #r8; 1 here: m8"


def test_members_in_the_lobby_hold_no_room_and_joining_others_rooms_is_never_refused() -> None:
    chat = Chat(max_rooms_per_address=1)
    chat.join("a", address="10.0.0.1")
    chat.join("b", address="10.0.0.1")
    chat.line("a", "/join one")
    assert chat.take("a")[-1] == "#one -!- you joined #one; 1 here: a"
    chat.line("b", "/join two")
    assert chat.take("b")[-1].startswith("- -!- error: your address already has 1 rooms")
    chat.line("b", "/join one")
    assert chat.take("b")[-1] == "#one -!- you joined #one; 2 here: a, b"


def test_an_empty_room_is_forgotten_at_once_so_it_holds_no_place() -> None:
    chat = Chat(max_rooms=2)
    chat.join("a")
    chat.line("a", "/join one")
    chat.line("a", "/join two")
    assert chat.take("a")[-1] == "- -!- error: there are 2 rooms already; /rooms lists them"
    chat.line("a", "/leave one")
    chat.line("a", "/join three")
    assert chat.take("a")[-1] == "#three -!- you joined #three; 1 here: a"
    chat.line("a", "/leave lobby")
    chat.line("a", "/rooms")
    assert chat.take("a")[-1] == "- -!- rooms: #lobby (0), #three (1)"


# --- flooding ----------------------------------------------------------------------------


def test_a_flood_is_cut_to_the_rate_with_one_notice() -> None:
    chat = Chat(rate=2, burst=3)
    chat.join("alice")
    chat.join("bob")
    chat.take("alice")
    chat.now += 10
    chat.send("alice", b"".join(b"flood %d\n" % n for n in range(50)))
    assert chat.take("bob") == [f"#lobby <alice> flood {n}" for n in range(3)]
    assert chat.take("alice")[3:] == [
        "- -!- error: you are sending too fast (at most 2 lines a second);"
        " lines are dropped until you slow down"
    ]
    chat.now += 0.5  # one token back
    chat.line("alice", "one more")
    chat.line("alice", "too soon")
    assert chat.take("bob") == ["#lobby <alice> one more"]
    assert chat.take("alice") == ["#lobby <alice> one more"], "told once per flood"
    chat.now += 60  # slowed down: the bucket is full again
    chat.send("alice", b"calm again\n" * 4)
    assert chat.take("bob") == ["#lobby <alice> calm again"] * 3
    assert chat.take("alice")[-1].startswith("- -!- error: you are sending too fast")


def test_the_rate_limit_follows_the_monotonic_clock_not_the_wall_clock() -> None:
    chat = Chat(rate=1, burst=2)
    chat.join("alice")
    chat.join("bob")
    chat.now += 10
    chat.send("alice", b"one\ntwo\nthree\n")
    assert chat.take("bob") == ["#lobby <alice> one", "#lobby <alice> two"]
    chat.wall_step += 3600  # the wall clock is set an hour forward
    chat.send("alice", b"four\nfive\n")
    assert chat.take("bob") == []
    chat.line("bob", "shown with the wall clock's time")
    line = chat.received["bob"][-1]
    assert line.startswith(datetime.datetime.fromtimestamp(int(chat.wall)).strftime("%H:%M:%S"))


def test_quit_gets_through_a_flood() -> None:
    chat = Chat(rate=1, burst=1)
    chat.join("alice")
    chat.join("bob")
    chat.send("alice", b"one\ntwo\nthree\n/quit\n")
    assert chat.take("bob")[-1] == "#lobby -!- alice quit"


def test_rate_zero_means_no_limit() -> None:
    chat = Chat(rate=0)
    chat.join("alice")
    chat.send("alice", b"x\n" * 1000)
    assert len(chat.take("alice")) == 1000


def test_other_members_are_not_limited_by_one_flooder() -> None:
    chat = Chat(rate=1, burst=3)
    chat.join("alice")
    chat.join("bob")
    chat.send("alice", b"spam\n" * 100)
    chat.take("bob")
    chat.line("bob", "hello")
    chat.line("bob", "there")
    assert chat.take("alice")[-2:] == ["#lobby <bob> hello", "#lobby <bob> there"]


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"default_room": "no room"},
        {"history": -1},
        {"rate": -1},
        {"burst": 0},
        {"max_line_length": 0},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"must be|room"):
        ChatSettings(**settings)  # type: ignore[arg-type]


def test_the_default_room_can_be_named() -> None:
    chat = Chat(default_room="#Hall")
    chat.connect("a")
    chat.line("a", "a")
    assert chat.take("a")[-1] == "#hall -!- you joined #hall; 1 here: a"
    assert chat.protocol.room_nicks("hall") == ["a"]


# --- renderings ----------------------------------------------------------------------------


def test_format_json_sends_events_as_json_lines_with_codes() -> None:
    chat = Chat()
    chat.connect("bot")
    chat.line("bot", "/format json")
    chat.line("bot", "bot")
    chat.join("alice")
    chat.line("alice", "hi \u202e")
    chat.line("bot", "/nick alice")
    chat.line("bot", "/bogus")
    got = [json.loads(line) for line in chat.received["bot"][1:]]
    time = chat.wall
    assert got == [
        {
            "type": "notice",
            "time": time,
            "place": "-",
            "code": "format",
            "text": "lines are now sent as json",
            "format": "json",
        },
        {
            "type": "notice",
            "time": time,
            "place": "-",
            "code": "nick",
            "text": "you are now known as bot",
            "nick": "bot",
            "rate": 0,
            "burst": 10,
        },
        {
            "type": "notice",
            "time": time,
            "place": "#lobby",
            "code": "joined",
            "text": "you joined #lobby; 1 here: bot",
            "room": "#lobby",
            "nicks": ["bot"],
            "count": 1,
        },
        {"type": "joined", "time": time, "room": "#lobby", "nick": "alice"},
        {"type": "said", "time": time, "room": "#lobby", "nick": "alice", "text": "hi \\u202e"},
        {
            "type": "error",
            "time": time,
            "place": "-",
            "code": "nick-taken",
            "text": 'the nickname "alice" is taken; choose another',
            "nick": "alice",
            "holder": "alice",
        },
        {
            "type": "error",
            "time": time,
            "place": "-",
            "code": "unknown-command",
            "text": 'unknown command "/bogus"; /help lists the commands',
        },
    ]
    assert chat.received["bot"][0].endswith(f"- -!- {WELCOME}")


def test_a_line_is_rendered_once_per_rendering_and_the_same_bytes_go_to_each_member() -> None:
    chat = Chat()
    for name in ("t1", "t2", "j1", "j2"):
        chat.connect(name)
        if name.startswith("j"):
            chat.line(name, "/format json")
        chat.line(name, name)
    out = deliveries(chat.protocol.receive(chat.members["t1"], b"hello\n", chat.now, chat.wall))
    assert len(out) == 2
    by_peers = {tuple(sorted(peers)): data for peers, data in out}
    assert by_peers[("t1", "t2")].endswith(b" #lobby <t1> hello\n")
    assert json.loads(by_peers[("j1", "j2")])["text"] == "hello"


def test_a_member_switching_to_json_in_a_room_gets_json_from_then_on(chat: Chat) -> None:
    chat.line("bob", "/format json")
    chat.line("alice", "/me waves")
    assert chat.take("alice") == ["#lobby * alice waves"]
    line = chat.received.pop("bob")[-1]
    assert json.loads(line) | {"time": 0} == {
        "type": "action",
        "time": 0,
        "room": "#lobby",
        "nick": "alice",
        "text": "waves",
    }
    chat.line("bob", "/format TEXT")
    chat.line("bob", "/format yaml")
    assert chat.take("bob") == [
        "- -!- lines are now sent as text",
        '- -!- error: no format called "yaml"; use text or json',
    ]


def test_history_is_shown_in_each_members_rendering() -> None:
    chat = Chat()
    chat.join("alice")
    chat.line("alice", "first")
    chat.line("alice", "/me second")
    chat.connect("bot")
    chat.line("bot", "/format json")
    chat.line("bot", "bot")
    types = [json.loads(line)["type"] for line in chat.received["bot"][1:]]
    assert types == ["notice", "notice", "said", "action", "notice"]
    chat.join("carol")
    chat.connect("dave")
    chat.line("dave", "dave")
    assert chat.take("dave")[2:4] == ["#lobby <alice> first", "#lobby * alice second"]
