"""Transcoder: a byte stream re-encoded chunk by chunk, never failing on bad bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.transcode import Transcoder

TEXT = st.text(st.characters(blacklist_categories=["Cs"]))


def feed_in_pieces(transcoder: Transcoder, data: bytes, cuts: list[int]) -> bytes:
    bounds = [0, *sorted(cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    return b"".join(transcoder.feed(piece) for piece in pieces) + transcoder.end()


@given(TEXT.filter(lambda t: t.encode("gbk", "ignore").decode("gbk") == t), st.data())
def test_gbk_to_utf8_survives_any_chunking(text: str, data: st.DataObject) -> None:
    encoded = text.encode("gbk")
    cuts = data.draw(st.lists(st.integers(0, len(encoded))))
    assert feed_in_pieces(Transcoder("gbk", "utf-8"), encoded, cuts) == text.encode()


@given(TEXT, st.data())
def test_utf8_to_gbk_survives_any_chunking(text: str, data: st.DataObject) -> None:
    encoded = text.encode()
    cuts = data.draw(st.lists(st.integers(0, len(encoded))))
    assert feed_in_pieces(Transcoder("utf-8", "gbk"), encoded, cuts) == text.encode(
        "gbk", "replace"
    )


@pytest.mark.parametrize("source", ["gbk", "utf-8", "iso2022_jp", "big5"])
@given(raw=st.binary(), data=st.data())
def test_any_bytes_come_out_as_valid_utf8_or_escaped_bytes(
    source: str, raw: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw))))
    out = feed_in_pieces(Transcoder(source, "utf-8"), raw, cuts)
    text = out.decode("utf-8", "surrogateescape")
    assert all(ord(c) < 0xDC00 or ord(c) >= 0xDC80 for c in text)  # only bytes >= 128 escaped


def test_undecodable_bytes_reach_the_terminal_unchanged() -> None:
    transcoder = Transcoder("gbk", "utf-8")
    assert transcoder.feed(b"ok \xff\x80 ") + transcoder.end() == b"ok \xff\x80 "


def test_a_character_split_between_chunks_is_held_back() -> None:
    transcoder = Transcoder("gbk", "utf-8")
    first, second = "你".encode("gbk")[:1], "你".encode("gbk")[1:]
    assert transcoder.feed(first) == b""
    assert transcoder.feed(second) == "你".encode()


def test_a_stream_ending_mid_character_keeps_the_byte() -> None:
    transcoder = Transcoder("gbk", "utf-8")
    assert transcoder.feed("你".encode("gbk")[:1]) == b""
    assert transcoder.end() == "你".encode("gbk")[:1]


def test_a_broken_escape_sequence_below_128_does_not_raise() -> None:
    transcoder = Transcoder("iso2022_jp", "utf-8")
    assert transcoder.feed(b"\x1b$Bxx\x1b(B", final=True).endswith(b"\xef\xbf\xbd")


def test_an_escape_sequence_fed_a_byte_at_a_time_past_its_pending_room_does_not_raise() -> None:
    transcoder = Transcoder("iso2022_jp", "utf-8")
    out = b"".join(transcoder.feed(bytes([c])) for c in b"\x1b$(" + b"\x00" * 10)
    out += transcoder.feed("ok".encode("iso2022_jp")) + transcoder.end()
    assert out.endswith(b"ok")


def test_characters_the_target_lacks_become_question_marks() -> None:
    assert Transcoder("utf-8", "latin-1").feed("é你".encode(), final=True) == b"\xe9?"


def test_the_same_codec_passes_bytes_through() -> None:
    transcoder = Transcoder("UTF8", "utf-8")
    assert transcoder.identity
    assert transcoder.feed(b"\xff\xfe") == b"\xff\xfe"


@pytest.mark.parametrize(
    ("name", "problem"),
    [("nope", "unknown encoding 'nope'"), ("utf-16", "does not write ASCII as ASCII")],
)
def test_encodings_that_cannot_be_used_are_refused(name: str, problem: str) -> None:
    with pytest.raises(LookupError, match=problem):
        Transcoder(name, "utf-8")
