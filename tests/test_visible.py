"""Control and invisible characters are escaped wherever names reach people."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from socketeer.visible import has_invisible, visible


def test_terminal_escapes_are_written_out() -> None:
    assert visible("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert visible("bell\x07 del\x7f c1\x9b") == "bell\\x07 del\\x7f c1\\x9b"
    assert visible("two\nlines\r") == "two\\x0alines\\x0d"


def test_bidi_and_zero_width_characters_are_written_out() -> None:
    assert visible("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert visible("vie\u200bwer") == "vie\\u200bwer"
    assert visible("\ufeffbom") == "\\ufeffbom"


def test_undecodable_bytes_show_as_bytes() -> None:
    assert visible(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"


def test_ordinary_text_is_unchanged() -> None:
    for text in (
        "hello",
        "文件.txt",
        "naïve café",
        "\uff56\uff49\uff45\uff57\uff45\uff52",
        "a b\\c",
    ):
        assert visible(text) == text
        assert not has_invisible(text)


@given(st.text())
def test_nothing_invisible_survives(text: str) -> None:
    shown = visible(text)
    assert not has_invisible(shown)
    assert has_invisible(text) == (shown != text)
