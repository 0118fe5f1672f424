"""The chat's parsers and small rules, with property tests: commands, lines, names, limits."""

from __future__ import annotations

import contextlib
import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.addresses import address_key
from socketeer.ratelimit import TokenBucket
from socketeer.services.chat import Backoff, ChatLine, parse_line
from socketeer.services.chat.commands import (
    Act,
    Format,
    Help,
    Invalid,
    Join,
    Leave,
    Msg,
    Nick,
    Online,
    Ping,
    Quit,
    Rooms,
    Say,
    Switch,
    Who,
    parse_command,
)
from socketeer.services.chat.events import (
    Acted,
    Event,
    Joined,
    Left,
    Notice,
    Private,
    Renamed,
    Said,
)
from socketeer.services.chat.incoming import LineSplitter, Overlong, clean_text
from socketeer.services.chat.lines import Stamp, format_line
from socketeer.services.chat.names import name_key, nick_problem, room_name
from socketeer.services.chat.rendering import JSON, TEXT, parse_json

NAME_CHARS = st.characters(categories=["L", "N"]) | st.sampled_from("_-.")
nicks = st.text(NAME_CHARS, min_size=1, max_size=24).filter(lambda n: nick_problem(n) is None)
words = st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=30)


# --- commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("hello", Say("hello")),
        ("  indented", Say("  indented")),
        ("//not a command", Say("/not a command")),
        ("/nick bob", Nick("bob")),
        ("/NICK  bob ", Nick("bob")),
        ("/join #dev", Join("#dev")),
        ("/join dev", Join("dev")),
        ("/leave", Leave()),
        ("/part", Leave()),
        ("/rooms", Rooms()),
        ("/list", Rooms()),
        ("/who", Who()),
        ("/names", Who()),
        ("/msg bob hi there", Msg("bob", "hi there")),
        ("/msg\tbob\thi", Msg("bob", "hi")),
        ("/me waves", Act("waves")),
        ("/help", Help()),
        ("/quit", Quit("")),
        ("/quit gone fishing", Quit("gone fishing")),
        ("/exit", Quit("")),
        ("/nick", Invalid("usage: /nick NAME")),
        ("/nick a b", Invalid("usage: /nick NAME")),
        ("/join", Invalid("usage: /join ROOM")),
        ("/msg bob", Invalid("usage: /msg NAME TEXT")),
        ("/me", Invalid("usage: /me ACTION")),
        ("/who else", Who("else")),
        ("/who *", Online()),
        ("/online", Online()),
        ("/who a b", Invalid("usage: /who [ROOM]")),
        ("/switch #dev", Switch("#dev")),
        ("/switch", Invalid("usage: /switch ROOM")),
        ("/ping 42", Ping("42")),
        ("/ping", Ping()),
        ("/rooms all", Invalid("usage: /rooms")),
        ("/help me", Invalid("usage: /help")),
        ("/leave now", Leave("now")),
        ("/leave a b", Invalid("usage: /leave [ROOM]")),
        (
            "/kick bob",
            Invalid('unknown command "/kick"; /help lists the commands', "unknown-command"),
        ),
        ("/format JSON", Format("json")),
        ("/format", Invalid("usage: /format text|json")),
    ],
)
def test_parse_command(typed: str, command: object) -> None:
    assert parse_command(typed) == command


@pytest.mark.parametrize("typed", ["/", "/ nick bob"])
def test_a_slash_alone_is_explained(typed: str) -> None:
    parsed = parse_command(typed)
    assert isinstance(parsed, Invalid)
    assert "a command follows" in parsed.reason


@given(st.text())
def test_parse_command_never_raises_and_plain_lines_are_said(text: str) -> None:
    parsed = parse_command(text)
    if not text.startswith("/"):
        assert parsed == Say(text)


@given(nicks, words)
def test_nick_and_msg_round_trip(nick: str, text: str) -> None:
    assert parse_command(f"/nick {nick}") == Nick(nick)
    assert parse_command(f"/msg {nick} {text}") == Msg(nick, text)


# --- names -------------------------------------------------------------------------------


def test_room_names_are_lower_case_with_a_hash() -> None:
    assert room_name("Dev") == ("#dev", None)
    assert room_name("#Dev") == ("#dev", None)
    assert room_name("#")[1] == "a room name cannot be empty"
    assert room_name("a" * 33)[1] == "a room name has at most 32 characters"
    assert name_key("ALICE") == name_key("alice")


@given(st.text(max_size=30))
def test_a_name_key_does_not_change_with_normalisation_and_case(name: str) -> None:
    assert name_key(name) == name_key(unicodedata.normalize("NFKC", name.casefold()))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("viewer", "v\u0456ewer"),  # Cyrillic i
        ("viewer", "\uff56\uff49\uff45\uff57\uff45\uff52"),  # fullwidth
        ("viewer", "ViEwEr"),
        ("paypal", "p\u0430yp\u0430l"),  # Cyrillic a
        ("alice", "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e"),  # mathematical bold
        ("bob", "b\u200bob"),  # a zero-width space is no difference
    ],
)
def test_names_that_look_alike_have_one_key(one: str, other: str) -> None:
    assert name_key(one) == name_key(other)


@pytest.mark.parametrize(("one", "other"), [("alice", "alicia"), ("bob", "rob"), ("ana", "anna")])
def test_names_that_look_different_have_different_keys(one: str, other: str) -> None:
    assert name_key(one) != name_key(other)


@given(st.text(max_size=40))
def test_a_valid_nick_can_never_break_the_line_format(nick: str) -> None:
    if nick_problem(nick) is None:
        assert not any(char.isspace() for char in nick)
        assert nick[0] not in "<*-#@"


# --- incoming lines ----------------------------------------------------------------------


def feed_in_pieces(splitter: LineSplitter, data: bytes, cuts: list[int]) -> list[str | Overlong]:
    out: list[str | Overlong] = []
    last = 0
    for cut in sorted(cut % (len(data) + 1) for cut in cuts):
        out += splitter.feed(data[last:cut])
        last = cut
    out += splitter.feed(data[last:])
    return out


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_any_split_of_any_bytes_gives_the_same_lines(data: bytes, cuts: list[int]) -> None:
    whole = LineSplitter(16, "line")
    expected = whole.feed(data) + whole.end()
    pieces = LineSplitter(16, "line")
    assert feed_in_pieces(pieces, data, cuts) + pieces.end() == expected


@given(st.binary(max_size=300))
def test_lines_are_clean_text_within_the_limit(data: bytes) -> None:
    splitter = LineSplitter(16)
    for line in splitter.feed(data) + splitter.end():
        if isinstance(line, str):
            assert len(line.encode()) <= 16 * 3  # a byte may become U+FFFD
            assert line == clean_text(line)
            assert not any(ord(char) < 0x20 for char in line)
    assert len(splitter._buffer) <= 17


def test_a_first_piece_without_a_newline_is_read_piece_by_piece() -> None:
    splitter = LineSplitter(6)
    assert splitter.feed("小明".encode()) == ["小明"]
    assert splitter.framing == "raw"
    assert splitter.feed(b"hi") == ["hi"]
    assert splitter.feed(b"one\ntwo") == ["one", "two"]
    assert splitter.feed(b"three\r\n") == ["three"]
    assert splitter.feed(b"1234567") == [Overlong(6)]
    assert splitter.end() == []
    lines = LineSplitter(5)
    assert lines.feed(b"ab\n") == ["ab"]
    assert lines.framing == "line"
    assert lines.feed(b"cd") == []


def test_line_splitter_cases() -> None:
    splitter = LineSplitter(5)
    assert splitter.feed(b"ab\r\ncd\n") == ["ab", "cd"]
    assert splitter.feed(b"12345\r") == []
    assert splitter.feed(b"\n") == ["12345"]
    assert splitter.feed(b"123456\n") == [Overlong(5)]
    assert splitter.feed(b"1234567") == [Overlong(5)]
    assert splitter.feed(b"89\nok\n") == ["ok"]
    assert splitter.feed(b"last") == []
    assert splitter.end() == ["last"]
    assert splitter.end() == []


def test_clean_text() -> None:
    assert clean_text("a\tb\x1b[31mc\x7f\x85d") == "a b\ufffd[31mc\ufffd\ufffdd"


# --- delivered lines ---------------------------------------------------------------------


@given(nicks, st.text(NAME_CHARS, min_size=1, max_size=32), words)
def test_format_and_parse_round_trip(nick: str, room: str, text: str) -> None:
    place = room_name(room)[0]
    said = parse_line(format_line("12:34:56", place, f"<{nick}>", text).decode())
    assert said == ChatLine("12:34:56", place, "said", nick, text)
    assert str(said) == f"12:34:56 {place} <{nick}> {text}"
    acted = parse_line(format_line("12:34:56", place, "*", f"{nick} {text}").decode())
    assert acted == ChatLine("12:34:56", place, "action", nick, text)
    notice = parse_line(format_line("12:34:56", "-", "-!-", f"error: {text}").decode())
    assert notice.error
    assert notice.nick is None
    assert notice.room is None


def test_private_lines_and_rooms() -> None:
    line = parse_line("01:02:03 @bob <alice> psst\n")
    assert line.private
    assert line.room is None
    assert parse_line("01:02:03 #dev -!- x joined #dev").room == "#dev"


@pytest.mark.parametrize(
    "text",
    ["", "hello", "12:34:56 #room", "1234:5678 #r <a> b", "12:34:56 #r bob hi", "12:34:56 #r <> x"],
)
def test_lines_not_in_the_format_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a chat line"):
        parse_line(text)


def test_stamp_is_computed_once_a_second() -> None:
    stamp = Stamp()
    first = stamp(1_700_000_000.1)
    assert stamp(1_700_000_000.9) is first
    assert stamp(1_700_000_001.0) != first
    assert len(first) == 8


# --- rate limit and backoff ---------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.4) is False
    assert bucket.allow(0.5) is True
    assert bucket.allow(100.0) is True  # refills to the burst, no more
    assert [bucket.allow(100.0) for _ in range(3)] == [True, True, False]
    assert bucket.allow(50.0) is False, "a clock stepping back refills nothing"


@given(
    st.floats(min_value=0.1, max_value=100),
    st.integers(min_value=1, max_value=20),
    st.lists(st.floats(min_value=0, max_value=10), max_size=200),
)
def test_token_bucket_never_allows_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, steps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, allowed = 0.0, 0
    for step in steps:
        now += step
        allowed += bucket.allow(now)
    assert allowed <= burst + rate * now + 1e-9


def test_token_bucket_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=-1, burst=1, now=0)


def test_backoff_doubles_to_a_cap_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=4, jitter=0.1, uniform=lambda low, high: high)
    assert [round(backoff.next(), 3) for _ in range(6)] == [0.55, 1.1, 2.2, 4.4, 4.4, 4.4]
    backoff.reset()
    assert round(backoff.next(), 3) == 0.55


@given(st.integers(min_value=1, max_value=30))
def test_backoff_jitter_stays_within_its_fraction(attempts: int) -> None:
    backoff = Backoff(initial=1, maximum=8, jitter=0.2)
    for number in range(attempts):
        base = min(8, 2**number)
        assert 0.8 * base <= backoff.next() <= 1.2 * base


def test_backoff_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0)


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peername", "address"),
    [
        (("127.0.0.1", 5000), "127.0.0.1"),
        (("2001:db8:1:2:aaaa::1", 5000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 6000, 0, 0), "2001:db8:1:2::/64"),
        (("::ffff:192.0.2.7", 5000, 0, 0), "192.0.2.7"),
        (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
        ("/tmp/chat.sock", "unix"),
        ("", "unix"),
        (None, "unix"),
    ],
)
def test_members_count_by_host_or_ipv6_network(peername: object, address: str) -> None:
    assert address_key(peername) == address


# --- renderings ----------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
texts = st.text(max_size=40)
events = st.one_of(
    st.builds(Said, times, texts, texts, texts),
    st.builds(Acted, times, texts, texts, texts),
    st.builds(Private, times, texts, texts, texts),
    st.builds(Joined, times, texts, texts),
    st.builds(Left, times, texts, texts, st.sampled_from(["left", "quit", "disconnected"]), texts),
    st.builds(Renamed, times, texts, texts, texts),
    st.builds(
        Notice,
        times,
        texts,
        texts,
        texts,
        st.dictionaries(st.sampled_from(["nick", "room", "count"]), texts | st.integers()),
        st.booleans(),
    ),
)


@given(events)
def test_every_event_comes_back_from_its_json_line(event: Event) -> None:
    line = JSON.render(event)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert parse_json(line) == event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
json_objects = st.dictionaries(
    st.sampled_from(["type", "time", "room", "nick", "text", "how", "reason", "place", "code"]),
    json_values | st.sampled_from(["said", "left", "notice", "error", "quit", "renamed"]),
)


@given(st.text(max_size=80) | json_objects.map(json.dumps))
def test_parse_json_refuses_what_is_not_an_event_with_value_error(line: str) -> None:
    with contextlib.suppress(ValueError):
        parse_json(line)


@given(
    st.builds(Said, times, st.just("#lobby"), nicks, words),
    st.builds(Joined, times, st.just("#dev"), nicks),
)
def test_text_lines_of_events_parse_back(said: Said, joined: Joined) -> None:
    line = parse_line(TEXT.line(said))
    assert (line.place, line.kind, line.nick, line.text) == ("#lobby", "said", said.nick, said.text)
    assert parse_line(TEXT.line(joined)).text == f"{joined.nick} joined #dev"
