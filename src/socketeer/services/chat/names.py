"""The rules for nicknames and room names.

A nickname is 1 to 24 characters: letters and digits of any script, plus
``_``, ``-`` and ``.``, starting with a letter, a digit or ``_``.  A room name
follows the same rules with up to 32 characters and is written with a ``#``
in front (``#lobby``); users may type it with or without the ``#``.  Both
compare without regard to case: ``Alice`` and ``alice`` are the same person,
``#Dev`` and ``#dev`` the same room.
"""

from __future__ import annotations

__all__ = [
    "MAX_NICK_LENGTH",
    "MAX_ROOM_LENGTH",
    "name_key",
    "nick_problem",
    "room_name",
]

MAX_NICK_LENGTH = 24
MAX_ROOM_LENGTH = 32
_PUNCTUATION = frozenset("_-.")


def _name_problem(name: str, what: str, limit: int) -> str | None:
    if not name:
        return f"a {what} cannot be empty"
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


def name_key(name: str) -> str:
    """The form two names are compared in: ``Alice`` and ``ALICE`` give the same key."""
    return name.casefold()
