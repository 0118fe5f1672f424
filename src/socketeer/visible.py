"""Text shown to people with nothing hidden in it: control and invisible characters escaped.

A name a client chose travels into error lines, logs and other people's
screens.  Raw control bytes there would move a terminal's cursor or clear
it (``ESC[2J``), and bidirectional overrides or zero-width characters would
make one name look like another.  :func:`visible` writes each such
character as an escape (``\\x1b``, ``\\u202e``) so people see it is there.
Sans-IO: no I/O, no clock.
"""

from __future__ import annotations

import re

__all__ = ["INVISIBLE", "has_invisible", "visible"]

#: Characters that change how text around them is shown, or show as nothing:
#: C0 and C1 controls, DEL, bidirectional controls (embeddings, overrides,
#: isolates, marks), zero-width characters, line and paragraph separators,
#: the byte-order mark, and bytes kept undecoded (lone surrogates from
#: ``surrogateescape``).
INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb\udc80-\udcff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid text
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control or invisible character written as an escape."""
    return INVISIBLE.sub(_escape, text)


def has_invisible(text: str) -> bool:
    """Whether ``text`` holds a character :func:`visible` would escape."""
    return INVISIBLE.search(text) is not None
