"""Services are sans-IO: drive their handlers with byte strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketeer.service import Handler, TextCodec
from socketeer.services import SERVICES, ChatService, EchoService, GreetService, make_service

# --------------------------------------------------------------------------- greet


def greet(encoding: str = "utf-8") -> Handler:
    return make_service("greet", encoding).new_handler()


def test_greet_says_welcome_first() -> None:
    handler = greet()
    assert list(handler.opened()) == [b"welcome!"]
    assert not handler.finished


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        (b"bob", b"hello, bob!"),
        (b"bob\n", b"hello, bob!"),
        (b"bob\r\n", b"hello, bob!"),
        (b"", b"hello, !"),
        (b"  spaced  ", b"hello,   spaced  !"),
        (b"exit now", b"hello, exit now!"),
        (b"EXIT", b"hello, EXIT!"),
        ("你好".encode(), "hello, 你好!".encode()),
    ],
)
def test_greet_says_hello(message: bytes, reply: bytes) -> None:
    handler = greet()
    assert list(handler.received(message)) == [reply]
    assert not handler.finished


@pytest.mark.parametrize("message", [b"exit", b"exit\n", b"exit\r\n"])
def test_exit_finishes_the_session_without_a_reply(message: bytes) -> None:
    handler = greet()
    assert list(handler.received(b"alice")) == [b"hello, alice!"]
    assert list(handler.received(message)) == []
    assert handler.finished


def test_sessions_finish_independently() -> None:
    service = GreetService()
    first, second = service.new_handler(), service.new_handler()
    first.received(b"exit")
    assert first.finished
    assert not second.finished
    assert list(second.received(b"carol")) == [b"hello, carol!"]


def test_greet_in_gbk() -> None:
    handler = greet("gbk")
    assert list(handler.opened()) == [b"welcome!"]
    assert list(handler.received("你好".encode("gbk"))) == ["hello, 你好!".encode("gbk")]
    assert list(handler.received("退出".encode("gbk"))) == ["hello, 退出!".encode("gbk")]
    assert list(handler.received(b"exit")) == []
    assert handler.finished


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("utf-8", b"\xff\xfe"),
        ("utf-8", "你好".encode("gbk")),  # a gbk client talking to a utf-8 server
        ("utf-8", "你好".encode()[:-1]),  # a cut multi-byte character
        ("gbk", b"\x81"),
        ("gbk", b"\x81\x30"),
        ("gbk", "你好".encode()),  # a utf-8 client talking to a gbk server
        ("ascii", "你好".encode()),
    ],
)
def test_undecodable_bytes_come_back_unchanged(encoding: str, message: bytes) -> None:
    handler = greet(encoding)
    assert list(handler.received(message)) == [b"hello, " + message + b"!"]


@settings(max_examples=300)
@given(
    encoding=st.sampled_from(["utf-8", "gbk", "gb18030", "latin-1", "ascii", "euc-kr"]),
    message=st.binary(max_size=30),
)
def test_greet_never_raises_and_keeps_the_bytes(encoding: str, message: bytes) -> None:
    handler = greet(encoding)
    replies = list(handler.received(message))
    name = message.rstrip(b"\r\n")
    if name == b"exit":
        assert replies == []
        assert handler.finished
    else:
        assert replies == [b"hello, " + name + b"!"]
        assert not handler.finished


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-le", "cp037"])
def test_encodings_that_rewrite_ascii_are_refused(encoding: str) -> None:
    with pytest.raises(LookupError, match="does not write ASCII as ASCII"):
        make_service("greet", encoding)


@pytest.mark.parametrize(
    "encoding", ["iso2022_jp", "hz", "big5", "cp932", "gbk", "latin-1", "utf-7"]
)
def test_greet_never_raises_in_any_accepted_encoding(encoding: str) -> None:
    handler = greet(encoding)
    for data in (b"a", b"\xff+\x80", b"\x1b$B", b"~{", b"\x80\x00"):
        (reply,) = handler.received(data)
        assert reply.startswith(b"hello, ")
        assert reply.endswith(b"!")


def test_failure_notice() -> None:
    assert list(greet().failed("line of 70000 bytes exceeds the limit of 65536 bytes")) == [
        b"error: line of 70000 bytes exceeds the limit of 65536 bytes"
    ]
    assert list(greet("gbk").failed("timed out")) == [b"error: timed out"]


# --------------------------------------------------------------------------- echo


def test_echo_sends_nothing_first() -> None:
    assert list(EchoService().new_handler().opened()) == []


@settings(max_examples=100)
@given(messages=st.lists(st.binary(max_size=100), max_size=5))
def test_echo_returns_the_same_bytes(messages: list[bytes]) -> None:
    handler = make_service("echo").new_handler()
    for message in messages:
        assert list(handler.received(message)) == [message]
    assert not handler.finished


def test_echo_does_not_treat_exit_specially() -> None:
    handler = make_service("echo").new_handler()
    assert list(handler.received(b"exit")) == [b"exit"]
    assert not handler.finished


def test_echo_failure_notice() -> None:
    assert list(EchoService().new_handler().failed("bad frame")) == [b"error: bad frame"]


# --------------------------------------------------------------------------- TextCodec


def test_text_codec_round_trips_undecodable_bytes() -> None:
    text = TextCodec()
    assert text.decode(b"caf\xc3\xa9") == "café"
    assert text.decode(b"\xff") == "\udcff"
    assert text.encode("\udcff") == b"\xff"
    assert text.encode("café") == b"caf\xc3\xa9"


def test_text_codec_replaces_unencodable_characters() -> None:
    assert TextCodec("ascii").encode("你好 bob") == b"?? bob"
    assert TextCodec("latin-1").encode("€5") == b"?5"


def test_text_codec_gbk() -> None:
    text = TextCodec("gbk")
    assert text.encoding == "gbk"
    assert text.encode("你好") == b"\xc4\xe3\xba\xc3"
    assert text.decode(b"\xc4\xe3\xba\xc3") == "你好"


@settings(max_examples=200)
@given(
    encoding=st.sampled_from(["utf-8", "gbk", "gb18030", "latin-1", "shift_jis"]),
    data=st.binary(max_size=30),
)
def test_text_codec_round_trip(encoding: str, data: bytes) -> None:
    text = TextCodec(encoding)
    assert text.encode(text.decode(data)) == data


@pytest.mark.parametrize("encoding", ["no-such-encoding", "rot13", ""])
def test_text_codec_refuses_unknown_encodings(encoding: str) -> None:
    with pytest.raises(LookupError):
        TextCodec(encoding)


# --------------------------------------------------------------------------- make_service


def test_service_registry() -> None:
    assert SERVICES == ("greet", "echo", "chat")
    assert isinstance(make_service("chat"), ChatService)
    greet_service = make_service("greet")
    echo_service = make_service("echo")
    assert isinstance(greet_service, GreetService)
    assert isinstance(echo_service, EchoService)
    assert (greet_service.name, greet_service.default_framing) == ("greet", "auto")
    assert (echo_service.name, echo_service.default_framing) == ("echo", "raw")
    assert greet_service.datagrams
    assert echo_service.datagrams


def test_each_session_gets_its_own_handler() -> None:
    service = make_service("greet")
    assert service.new_handler() is not service.new_handler()


@pytest.mark.parametrize("name", ["nope", "Greet", ""])
def test_make_service_unknown_name(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown service .* \(choose from greet, echo, chat\)"):
        make_service(name)


@pytest.mark.parametrize("encoding", ["no-such-encoding", "hex"])
def test_make_service_unknown_encoding(encoding: str) -> None:
    with pytest.raises(LookupError):
        make_service("greet", encoding)
