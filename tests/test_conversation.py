"""``send``'s conversation, sans-IO: how messages go out and where replies end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.conversation import Conversation, error_reason, unframed
from socketeer.errors import RemoteProtocolError
from socketeer.quantity import quantity


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def replies(talk: Conversation) -> list[bytes]:
    taken = []
    while (reply := talk.next_reply()) is not None:
        taken.append(reply)
    return taken


def test_auto_sends_lines_before_the_server_has_said_anything() -> None:
    assert Conversation("auto").outgoing(b"rose") == b"rose\n"


def test_auto_keeps_lines_for_a_server_whose_greeting_ends_with_one() -> None:
    talk = Conversation("auto")
    talk.receive_data(b"welcome!\n")
    assert replies(talk) == [b"welcome!\n"]
    assert talk.outgoing(b"rose") == b"rose\n"


def test_auto_sends_bare_messages_to_a_server_whose_greeting_ended_with_a_pause() -> None:
    """The classic ``sock.send(b'welcome!')`` server: no newline, ever."""
    talk = Conversation("auto")
    talk.receive_data(b"welc")
    talk.receive_data(b"ome!")
    assert replies(talk) == []
    talk.paused()
    assert replies(talk) == [b"welcome!"]
    assert talk.outgoing(b"exit") == b"exit"


def test_auto_switches_to_length_prefixes_when_the_server_sends_one() -> None:
    talk = Conversation("auto")
    data = frame(b"welcome!")
    talk.receive_data(data[:3])
    talk.paused()  # a pause inside a frame ends nothing
    talk.receive_data(data[3:])
    assert replies(talk) == [b"welcome!"]
    assert talk.outgoing(b"rose") == frame(b"rose")


def test_a_pause_ends_a_raw_reply_but_not_a_line_one() -> None:
    raw, line = Conversation("raw"), Conversation("line")
    for talk in (raw, line):
        talk.receive_data(b"hello, ")
        talk.paused()
    assert replies(raw) == [b"hello, "]
    assert replies(line) == []
    line.receive_data(b"rose!\nhel")
    assert replies(line) == [b"hello, rose!\n"]


def test_what_is_left_when_the_server_closes_is_its_last_reply() -> None:
    talk = Conversation("line")
    talk.receive_data(b"hi")
    talk.closed()
    assert replies(talk) == [b"hi"]
    assert talk.finished


def test_closing_inside_a_frame_is_a_protocol_error() -> None:
    talk = Conversation("length")
    talk.receive_data(frame(b"welcome!")[:6])
    with pytest.raises(RemoteProtocolError, match="inside a frame"):
        talk.closed()


@given(st.lists(st.binary(max_size=40), max_size=6), st.data())
def test_length_replies_survive_any_split(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame(body) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    talk = Conversation("length")
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        talk.receive_data(stream[start:end])
        talk.paused()
    talk.closed()
    assert replies(talk) == bodies


@given(st.binary(min_size=1, max_size=200), st.data())
def test_auto_loses_and_invents_no_bytes(stream: bytes, data: st.DataObject) -> None:
    """However text arrives and pauses fall, the replies put together are what was sent."""
    stream = stream.lstrip(b"\0") or b"x"  # a NUL first means length prefixes
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    talk = Conversation("auto")
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        if end > start:
            talk.receive_data(stream[start:end])
        if data.draw(st.booleans()):
            talk.paused()
    talk.closed()
    assert b"".join(replies(talk)) == stream


def test_error_reason() -> None:
    assert error_reason("error: server busy: 10000 connections already open\n") == (
        "server busy: 10000 connections already open"
    )
    assert error_reason("hello, error: x!\n") is None
    assert error_reason("error: x", sent="error: x") is None  # an echo
    assert error_reason(unframed(frame(b"error: frame of 9 bytes\n")).decode()) == (
        "frame of 9 bytes"
    )


@pytest.mark.parametrize(
    ("count", "unit", "text"),
    [
        (1, "second", "1 second"),
        (1.0, "second", "1 second"),
        (0.5, "second", "0.5 seconds"),
        (10, "second", "10 seconds"),
        (0, "byte", "0 bytes"),
        (1, "byte", "1 byte"),
        (1048576, "byte", "1048576 bytes"),
    ],
)
def test_quantity(count: float, unit: str, text: str) -> None:
    assert quantity(count, unit) == text
