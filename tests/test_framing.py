"""The sans-IO codecs: message boundaries survive any split, memory stays bounded."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketeer.errors import (
    FrameTooLarge,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from socketeer.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_LINE_LENGTH,
    AutoCodec,
    Codec,
    Framing,
    LengthPrefixCodec,
    LineCodec,
    RawCodec,
    ReceiveBuffer,
    make_codec,
)

# --------------------------------------------------------------------------- helpers

Outcome = tuple[list[bytes], str | None]


def run(codec: Codec, chunks: list[bytes]) -> Outcome:
    """Feed ``chunks`` then end the stream; return every message and the error, if any.

    Messages completed in the feed that failed (``FrameTooLarge.messages``) are
    included, as a session would still handle them.  The size a line is refused
    at is "the size seen so far", which depends on the split, so only the fact
    that it was too large is part of the outcome.
    """
    messages: list[bytes] = []
    try:
        for chunk in chunks:
            messages += codec.feed(chunk)
        messages += codec.end()
    except FrameTooLarge as exc:
        return [*messages, *exc.messages], "too large"
    except RemoteProtocolError as exc:
        return messages, str(exc)
    return messages, None


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``stream`` at the given offsets (any order, duplicates allowed)."""
    points = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in pairwise(points)]


def one_byte_at_a_time(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def header(length: int) -> bytes:
    return length.to_bytes(4, "big")


@st.composite
def cut_points(draw: st.DrawFn, stream: bytes) -> list[int]:
    return draw(st.lists(st.integers(0, len(stream)), max_size=12))


# Streams rich in the bytes line framing cares about.
line_streams = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from([b"a", b"xyz", b"\n", b"\r", b"\r\n", b"\x00", b"\xff"]), max_size=60
    ).map(b"".join),
)


@st.composite
def length_streams(draw: st.DrawFn) -> bytes:
    """Well-formed frames, optionally followed by a truncated or garbage tail."""
    frames = draw(st.lists(st.binary(max_size=40), max_size=8))
    stream = b"".join(header(len(f)) + f for f in frames)
    return stream + draw(st.binary(max_size=12))


# --------------------------------------------------------------------------- split invariance


@settings(max_examples=200)
@given(stream=line_streams, data=st.data())
def test_line_codec_any_split_yields_the_same_messages(stream: bytes, data: st.DataObject) -> None:
    whole = run(LineCodec(), [stream])
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LineCodec(), chunks) == whole
    assert run(LineCodec(), one_byte_at_a_time(stream)) == whole
    assert whole[1] is None  # far below the default limit


@settings(max_examples=200)
@given(
    stream=line_streams,
    delimiter=st.sampled_from([b"\n", b"\x00", b"a"]),
    limit=st.integers(0, 12),
    data=st.data(),
)
def test_line_codec_split_invariance_holds_with_a_limit(
    stream: bytes, delimiter: bytes, limit: int, data: st.DataObject
) -> None:
    whole = run(LineCodec(delimiter, limit), [stream])
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LineCodec(delimiter, limit), chunks) == whole
    assert run(LineCodec(delimiter, limit), one_byte_at_a_time(stream)) == whole


@settings(max_examples=200)
@given(
    stream=line_streams,
    delimiter=st.sampled_from([b"\r\n", b"<END>", b"\x00\x01"]),
    data=st.data(),
)
def test_multibyte_delimiter_split_invariance(
    stream: bytes, delimiter: bytes, data: st.DataObject
) -> None:
    stream = stream.replace(b"xyz", delimiter)
    *lines, rest = stream.split(delimiter)
    whole = run(LineCodec(delimiter), [stream])
    assert whole == ([*lines, rest] if rest else lines, None)
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LineCodec(delimiter), chunks) == whole
    assert run(LineCodec(delimiter), one_byte_at_a_time(stream)) == whole


def test_multibyte_delimiter_split_before_limit_is_not_refused() -> None:
    assert LineCodec(b"\r\n", 5).feed(b"abcde\r\n") == [b"abcde"]
    codec = LineCodec(b"\r\n", 5)
    assert codec.feed(b"abcde\r") == []
    assert codec.feed(b"\n") == [b"abcde"]


@settings(max_examples=200)
@given(stream=length_streams(), limit=st.integers(0, 50), data=st.data())
def test_length_codec_any_split_yields_the_same_outcome(
    stream: bytes, limit: int, data: st.DataObject
) -> None:
    whole = run(LengthPrefixCodec(limit), [stream])
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LengthPrefixCodec(limit), chunks) == whole
    assert run(LengthPrefixCodec(limit), one_byte_at_a_time(stream)) == whole


# --------------------------------------------------------------------------- round trips

line_messages = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r")), max_size=10
)


@settings(max_examples=150)
@given(messages=line_messages, data=st.data())
def test_line_round_trip(messages: list[bytes], data: st.DataObject) -> None:
    sender = LineCodec()
    stream = b"".join(sender.encode(m) for m in messages)
    assert stream.count(b"\n") == len(messages)
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LineCodec(), chunks) == (messages, None)


@settings(max_examples=150)
@given(
    delimiter=st.sampled_from([b"\r\n", b"\x00", b"END"]),
    messages=st.lists(st.binary(max_size=30), max_size=10),
    data=st.data(),
)
def test_custom_delimiter_round_trip(
    delimiter: bytes, messages: list[bytes], data: st.DataObject
) -> None:
    messages = [m.replace(delimiter, b"") for m in messages]
    messages = [m for m in messages if delimiter not in m]  # removal can create a new one
    stream = b"".join(LineCodec(delimiter).encode(m) for m in messages)
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LineCodec(delimiter), chunks) == (messages, None)


def test_encode_never_produces_a_line_the_receiver_reads_differently() -> None:
    sender = LineCodec(b"--")
    try:
        stream = sender.encode(b"a-")
    except LocalProtocolError:
        return
    assert LineCodec(b"--").feed(stream) == [b"a-"]


@settings(max_examples=150)
@given(messages=st.lists(st.binary(max_size=300), max_size=10), data=st.data())
def test_length_round_trip(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(LengthPrefixCodec().encode(m) for m in messages)
    assert len(stream) == sum(4 + len(m) for m in messages)
    chunks = split(stream, data.draw(cut_points(stream)))
    assert run(LengthPrefixCodec(), chunks) == (messages, None)


def test_length_encoding_is_a_big_endian_header() -> None:
    codec = LengthPrefixCodec()
    assert codec.encode(b"") == b"\x00\x00\x00\x00"
    assert codec.encode(b"hello") == b"\x00\x00\x00\x05hello"
    assert codec.encode(b"x" * 258) == b"\x00\x00\x01\x02" + b"x" * 258


def test_empty_frames_are_messages() -> None:
    codec = LengthPrefixCodec()
    assert codec.feed(header(0) * 3) == [b"", b"", b""]
    assert codec.feed(b"\x00\x00") == []
    assert codec.feed(b"\x00\x00") == [b""]
    assert codec.end() == []


# --------------------------------------------------------------------------- bounded memory


@settings(max_examples=150)
@given(
    limit=st.integers(0, 100),
    chunks=st.lists(
        st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"-")), max_size=30
    ),
)
def test_line_without_delimiter_is_refused_once_past_the_limit(
    limit: int, chunks: list[bytes]
) -> None:
    codec = LineCodec(max_line_length=limit)
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        if fed <= limit:
            assert codec.feed(chunk) == []
            assert len(codec._buffer) <= limit
        else:
            with pytest.raises(FrameTooLarge) as info:
                codec.feed(chunk)
            assert len(codec._buffer) <= limit + len(chunk)
            assert info.value.size == fed
            assert info.value.limit == limit
            assert str(info.value) == f"line of {fed} bytes exceeds the limit of {limit} bytes"
            return


@settings(max_examples=200)
@given(limit=st.integers(0, 30), chunks=st.lists(st.binary(max_size=40), max_size=30))
def test_line_buffer_never_exceeds_limit_plus_one_chunk(limit: int, chunks: list[bytes]) -> None:
    codec = LineCodec(max_line_length=limit)
    for chunk in chunks:
        try:
            codec.feed(chunk)
        except FrameTooLarge:
            assert len(codec._buffer) <= limit + len(chunk)
            return
        assert len(codec._buffer) <= limit


def test_line_of_exactly_the_limit_is_accepted_and_one_more_byte_is_not() -> None:
    assert LineCodec(max_line_length=5).feed(b"12345\n") == [b"12345"]
    codec = LineCodec(max_line_length=5)
    assert codec.feed(b"12345") == []
    assert codec.feed(b"\n") == [b"12345"]
    with pytest.raises(FrameTooLarge, match="line of 6 bytes exceeds the limit of 5 bytes"):
        LineCodec(max_line_length=5).feed(b"123456\n")


def test_hostile_line_stream_fails_on_the_feed_that_passes_the_limit() -> None:
    codec = LineCodec(max_line_length=100)
    for _ in range(10):
        assert codec.feed(b"x" * 10) == []
    with pytest.raises(FrameTooLarge):
        codec.feed(b"x" * 10)
    assert len(codec._buffer) == 110


def parts_size(codec: LengthPrefixCodec) -> int:
    return sum(len(p) for p in codec._parts)


@settings(max_examples=200)
@given(stream=length_streams(), limit=st.integers(0, 50), data=st.data())
def test_length_codec_holds_at_most_one_frame(
    stream: bytes, limit: int, data: st.DataObject
) -> None:
    codec = LengthPrefixCodec(limit)
    for chunk in split(stream, data.draw(cut_points(stream))):
        refused: FrameTooLarge | None = None
        try:
            codec.feed(chunk)
        except FrameTooLarge as exc:
            refused = exc
        if refused is not None:
            assert refused.size > limit
            assert parts_size(codec) == 0
            return
        assert parts_size(codec) <= limit
        assert len(codec._header) < 4


@pytest.mark.parametrize("announced", [1001, 2**31, 2**32 - 1])
def test_huge_announced_length_fails_after_the_header_alone(announced: int) -> None:
    codec = LengthPrefixCodec(1000)
    with pytest.raises(FrameTooLarge) as info:
        codec.feed(header(announced))
    assert info.value.size == announced
    assert info.value.limit == 1000
    assert str(info.value) == f"frame of {announced} bytes exceeds the limit of 1000 bytes"
    assert parts_size(codec) == 0


def test_huge_announced_length_fails_on_the_fourth_header_byte() -> None:
    codec = LengthPrefixCodec(1000)
    wire = header(2**32 - 1)
    for byte in wire[:3]:
        assert codec.feed(bytes([byte])) == []
    with pytest.raises(FrameTooLarge):
        codec.feed(wire[3:] + b"body that must never be kept")
    assert parts_size(codec) == 0


def test_announced_length_equal_to_the_limit_is_accepted() -> None:
    codec = LengthPrefixCodec(3)
    assert codec.feed(header(3) + b"ab") == []
    assert parts_size(codec) == 2
    assert codec.feed(b"c") == [b"abc"]
    assert parts_size(codec) == 0


def test_raw_piece_over_the_limit_is_refused() -> None:
    codec = RawCodec(4)
    assert codec.feed(b"1234") == [b"1234"]
    with pytest.raises(FrameTooLarge, match="message of 5 bytes exceeds the limit of 4 bytes"):
        codec.feed(b"12345")


# --------------------------------------------------------------------------- FrameTooLarge.messages


def test_line_frame_too_large_carries_the_lines_before_it() -> None:
    codec = LineCodec(max_line_length=10)
    assert codec.feed(b"first\n") == [b"first"]
    with pytest.raises(FrameTooLarge) as info:
        codec.feed(b"a\nb\r\n" + b"x" * 11 + b"\nafter\n")
    assert info.value.messages == [b"a", b"b"]


def test_unterminated_long_line_carries_the_lines_before_it() -> None:
    codec = LineCodec(max_line_length=10)
    with pytest.raises(FrameTooLarge) as info:
        codec.feed(b"a\nb\n" + b"x" * 11)
    assert info.value.messages == [b"a", b"b"]


def test_frame_too_large_from_a_later_feed_carries_only_that_feeds_messages() -> None:
    codec = LineCodec(max_line_length=10)
    assert codec.feed(b"a\n") == [b"a"]
    with pytest.raises(FrameTooLarge) as info:
        codec.feed(b"x" * 11)
    assert info.value.messages == []


def test_length_frame_too_large_carries_the_frames_before_it() -> None:
    sender = LengthPrefixCodec()
    codec = LengthPrefixCodec(10)
    assert codec.feed(sender.encode(b"zero")[:6]) == []
    wire = sender.encode(b"zero")[6:] + sender.encode(b"one") + sender.encode(b"")
    with pytest.raises(FrameTooLarge) as info:
        codec.feed(wire + header(11) + b"x" * 11 + sender.encode(b"after"))
    assert info.value.messages == [b"zero", b"one", b""]


def test_auto_frame_too_large_carries_lines_before_it() -> None:
    codec = AutoCodec(4)
    with pytest.raises(FrameTooLarge) as info:
        codec.feed(b"ok\n12345\n")
    assert info.value.messages == [b"ok"]


# --------------------------------------------------------------------------- fuzz


CODECS: dict[str, Callable[[], Codec]] = {
    "line": LineCodec,
    "line-small": lambda: LineCodec(max_line_length=8),
    "line-crlf": lambda: LineCodec(b"\r\n", 8),
    "line-multibyte": lambda: LineCodec(b"\x00\xff\x00", 8),
    "length": LengthPrefixCodec,
    "length-small": lambda: LengthPrefixCodec(16),
    "length-zero": lambda: LengthPrefixCodec(0),
    "raw-small": lambda: RawCodec(8),
    "auto": AutoCodec,
    "auto-small": lambda: AutoCodec(8),
    "make-auto": lambda: make_codec("auto", 8),
    "make-raw": lambda: make_codec("raw", 8),
    "make-line": lambda: make_codec("line", 8),
    "make-length": lambda: make_codec("length", 8),
}


@pytest.mark.parametrize("factory", list(CODECS.values()), ids=list(CODECS))
@settings(max_examples=100)
@given(chunks=st.lists(st.binary(max_size=30), max_size=10))
def test_arbitrary_bytes_raise_only_remote_protocol_errors(
    factory: Callable[[], Codec], chunks: list[bytes]
) -> None:
    codec = factory()
    messages: list[bytes] = []
    error: RemoteProtocolError | None = None
    try:
        for chunk in chunks:
            messages += codec.feed(chunk)
        messages += codec.end()
    except RemoteProtocolError as exc:  # anything else fails the test
        error = exc
    assert all(len(message) <= codec.max_message_size for message in messages)
    assert error is None or len(str(error).splitlines()) == 1


# --------------------------------------------------------------------------- line codec details


def test_crlf_lines_read_the_same_as_lf_lines() -> None:
    codec = LineCodec()
    assert codec.feed(b"one\r\ntwo\nthree\r") == [b"one", b"two"]
    assert codec.feed(b"\n") == [b"three"]


def test_only_one_cr_before_the_delimiter_is_dropped() -> None:
    assert LineCodec().feed(b"a\r\r\nb\rc\n\r\n") == [b"a\r", b"b\rc", b""]


def test_crlf_delimiter() -> None:
    codec = LineCodec(b"\r\n")
    assert codec.feed(b"a\nb\r\nc\r") == [b"a\nb"]
    assert codec.feed(b"\r\n") == [b"c\r"]
    assert codec.encode(b"x\ny") == b"x\ny\r\n"


def test_nul_delimiter_keeps_carriage_returns() -> None:
    codec = LineCodec(b"\x00")
    assert codec.feed(b"a\r\x00b\nc\x00\x00") == [b"a\r", b"b\nc", b""]
    assert codec.encode(b"x\ny") == b"x\ny\x00"


def test_multibyte_delimiter_split_across_chunks() -> None:
    codec = LineCodec(b"<END>")
    assert codec.feed(b"one<E") == []
    assert codec.feed(b"N") == []
    assert codec.feed(b"D>two<") == [b"one"]
    assert codec.feed(b"END><END") == [b"two"]
    assert codec.feed(b">") == [b""]
    assert codec.end() == []


def test_end_returns_the_final_unterminated_line() -> None:
    codec = LineCodec()
    assert codec.feed(b"a\nlast") == [b"a"]
    assert codec.end() == [b"last"]
    assert codec.end() == []


@pytest.mark.parametrize(
    ("stream", "final"),
    [(b"", []), (b"done\n", []), (b"tail\r", [b"tail"]), (b"\r", []), (b"a\nb c", [b"b c"])],
)
def test_line_end(stream: bytes, final: list[bytes]) -> None:
    codec = LineCodec()
    codec.feed(stream)
    assert codec.end() == final


def test_line_encode() -> None:
    assert LineCodec().encode(b"hello") == b"hello\n"
    assert LineCodec().encode(b"") == b"\n"
    assert LineCodec(send_delimiter=b"\r\n").encode(b"hello") == b"hello\r\n"


@pytest.mark.parametrize(
    ("delimiter", "message"),
    [(b"\n", b"a\nb"), (b"\n", b"\n"), (b"\r\n", b"a\r\nb"), (b"--", b"a--b")],
)
def test_line_encode_refuses_the_delimiter(delimiter: bytes, message: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="cannot contain the line delimiter"):
        LineCodec(delimiter).encode(message)


def test_line_codec_needs_a_delimiter() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        LineCodec(b"")


# --------------------------------------------------------------------------- length codec details


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"\x00", "stream ended inside a header: got 1 of 4 bytes"),
        (b"\x00\x00\x00", "stream ended inside a header: got 3 of 4 bytes"),
        (header(10), "stream ended inside a frame: got 0 of 10 bytes"),
        (header(10) + b"abc", "stream ended inside a frame: got 3 of 10 bytes"),
        (header(1) + b"x" + header(2) + b"y", "stream ended inside a frame: got 1 of 2 bytes"),
    ],
)
def test_length_end_inside_a_message(stream: bytes, message: str) -> None:
    whole = LengthPrefixCodec()
    whole.feed(stream)
    with pytest.raises(RemoteProtocolError) as info:
        whole.end()
    assert str(info.value) == message
    assert not isinstance(info.value, FrameTooLarge)

    piecewise = LengthPrefixCodec()
    for piece in one_byte_at_a_time(stream):
        piecewise.feed(piece)
    with pytest.raises(RemoteProtocolError, match=message):
        piecewise.end()


def test_length_end_between_frames() -> None:
    codec = LengthPrefixCodec()
    assert codec.feed(header(2) + b"hi") == [b"hi"]
    assert codec.end() == []


def test_length_encode_refuses_a_frame_over_the_limit() -> None:
    codec = LengthPrefixCodec(4)
    assert codec.encode(b"1234") == header(4) + b"1234"
    with pytest.raises(LocalProtocolError, match="frame of 5 bytes exceeds the limit of 4 bytes"):
        codec.encode(b"12345")


@pytest.mark.parametrize("limit", [-1, 2**32])
def test_length_limit_must_fit_the_header(limit: int) -> None:
    with pytest.raises(ValueError, match="32 bits"):
        LengthPrefixCodec(limit)


def test_local_and_remote_errors_are_distinct() -> None:
    assert issubclass(FrameTooLarge, RemoteProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)


# --------------------------------------------------------------------------- raw codec


def test_raw_codec_passes_pieces_through() -> None:
    codec = RawCodec()
    assert codec.feed(b"a\nb\r\n") == [b"a\nb\r\n"]
    assert codec.feed(b"") == []
    assert codec.end() == []
    assert codec.encode(b"x\ny") == b"x\ny"


# --------------------------------------------------------------------------- auto codec


def test_auto_before_the_first_piece() -> None:
    codec = AutoCodec()
    assert codec.mode == "undecided"
    assert codec.encode(b"welcome!") == b"welcome!\n"
    assert codec.feed(b"") == []
    assert codec.mode == "undecided"
    assert codec.end() == []


def test_auto_newline_first_piece_means_lines() -> None:
    codec = AutoCodec()
    assert codec.feed(b"bob\n") == [b"bob"]
    assert codec.mode == "line"
    assert codec.encode(b"hello, bob!") == b"hello, bob!\n"
    assert codec.feed(b"al") == []
    assert codec.feed(b"ice\r\ncarol") == [b"alice"]
    assert codec.end() == [b"carol"]


def test_auto_crlf_first_piece_replies_with_crlf() -> None:
    codec = AutoCodec()
    assert codec.feed(b"a\r\nb\r\n") == [b"a", b"b"]
    assert codec.mode == "line"
    assert codec.encode(b"hi") == b"hi\r\n"
    assert codec.feed(b"c\n") == [b"c"]


def test_auto_line_mode_refuses_newlines_in_replies() -> None:
    codec = AutoCodec()
    codec.feed(b"a\n")
    with pytest.raises(LocalProtocolError):
        codec.encode(b"x\ny")


@pytest.mark.parametrize("first", [b"bob", b"a\nb", b"a\n\r", b"\r"])
def test_auto_other_first_piece_means_raw(first: bytes) -> None:
    codec = AutoCodec()
    assert codec.feed(first) == [first]
    assert codec.mode == "raw"
    assert codec.encode(b"hi") == b"hi"
    assert codec.feed(b"later\n") == [b"later\n"]
    assert codec.end() == []


def test_auto_limit_applies_in_both_modes() -> None:
    with pytest.raises(FrameTooLarge):
        AutoCodec(4).feed(b"12345")
    with pytest.raises(FrameTooLarge):
        AutoCodec(4).feed(b"12345\n")
    assert AutoCodec(4).feed(b"1234\n") == [b"1234"]


# --------------------------------------------------------------------------- make_codec


@pytest.mark.parametrize(
    ("framing", "kind", "default_limit"),
    [
        ("line", LineCodec, DEFAULT_MAX_LINE_LENGTH),
        ("length", LengthPrefixCodec, DEFAULT_MAX_FRAME_SIZE),
        ("raw", RawCodec, DEFAULT_MAX_FRAME_SIZE),
        ("auto", AutoCodec, DEFAULT_MAX_LINE_LENGTH),
    ],
)
def test_make_codec(framing: Framing, kind: type[object], default_limit: int) -> None:
    codec = make_codec(framing)
    assert isinstance(codec, kind)
    assert codec.max_message_size == default_limit
    assert make_codec(framing, 123).max_message_size == 123
    assert make_codec(framing) is not codec


def test_make_codec_line_delimiter() -> None:
    codec = make_codec("line", delimiter=b"\x00")
    assert codec.feed(b"a\x00b\n\x00") == [b"a", b"b\n"]


def test_make_codecs_share_no_state() -> None:
    first = make_codec("line")
    first.feed(b"abc")
    assert make_codec("line").feed(b"\n") == [b""]


def test_make_codec_unknown_framing() -> None:
    with pytest.raises(ValueError, match=r"unknown framing 'json' \(choose from auto, raw, line"):
        make_codec(cast(Framing, "json"))


# --------------------------------------------------------------------------- ReceiveBuffer


def test_receive_buffer_take() -> None:
    buffer = ReceiveBuffer()
    assert len(buffer) == 0
    buffer.feed(b"hello ")
    buffer.feed(b"world")
    assert len(buffer) == 11
    assert buffer.take(5) == b"hello"
    assert buffer.take_exactly(7) is None
    assert buffer.take_exactly(6) == b" world"
    assert buffer.take() == b""
    buffer.feed(b"abc")
    assert buffer.take(10) == b"abc"


def test_receive_buffer_take_until() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"ab\r")
    assert buffer.take_until(b"\r\n", 10) is None
    buffer.feed(b"\ncd\r\n")
    assert buffer.take_until(b"\r\n", 10) == b"ab\r\n"
    assert buffer.take_until(b"\r\n", 10) == b"cd\r\n"
    assert buffer.take_until(b"\r\n", 10) is None
    assert len(buffer) == 0


def test_receive_buffer_take_until_limit_names_what() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"x" * 9)
    with pytest.raises(FrameTooLarge, match="header of 9 bytes exceeds the limit of 8 bytes"):
        buffer.take_until(b"\n", 8, "header")


@settings(max_examples=150)
@given(
    stream=line_streams,
    delimiter=st.sampled_from([b"\n", b"\r\n", b"xyz", b"aa"]),
    data=st.data(),
)
def test_receive_buffer_finds_every_delimiter_across_pieces(
    stream: bytes, delimiter: bytes, data: st.DataObject
) -> None:
    buffer = ReceiveBuffer()
    found: list[bytes] = []
    for chunk in split(stream, data.draw(cut_points(stream))):
        buffer.feed(chunk)
        while (line := buffer.take_until(delimiter, len(stream))) is not None:
            found.append(line)
    *lines, rest = stream.split(delimiter)
    assert found == [line + delimiter for line in lines]
    assert buffer.take() == rest
