"""The lines members receive: one format, easy to read and easy to parse.

Every line the server sends is four fields separated by single spaces::

    TIME PLACE SENDER TEXT
    14:03:07 #lobby <alice> hello everyone         alice said it in #lobby
    14:03:09 #lobby * alice waves                  alice did it (/me); the nick opens TEXT
    14:03:12 @bob <alice> are you there?           alice said it to bob alone (/msg)
    14:03:15 #lobby -!- carol joined #lobby        the server, about #lobby
    14:03:20 - -!- error: no one is called "zed"   the server, to you

``TIME`` is HH:MM:SS on the server's clock.  ``PLACE`` is the room
(``#name``), ``@nick`` for a private message to that member, or ``-`` when
the line is about no room.  ``SENDER`` is ``<nick>``, ``*`` for an action,
or ``-!-`` for the server.  Nicknames and room names never hold spaces, so
splitting on the first three spaces always works; TEXT is the rest.
Server replies to errors start with ``error: ``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .events import Event

__all__ = [
    "ACTION",
    "NOWHERE",
    "SERVER",
    "ChatLine",
    "Stamp",
    "format_line",
    "parse_line",
]

SERVER = "-!-"
ACTION = "*"
NOWHERE = "-"

Kind = Literal["said", "action", "notice"]


class Stamp:
    """Turns a time (seconds since the epoch) into ``HH:MM:SS`` local time, once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = datetime.datetime.fromtimestamp(second).strftime("%H:%M:%S")
        return self._text


def format_line(time: str, place: str, sender: str, text: str) -> bytes:
    """One delivered line, with its newline, in UTF-8."""
    return f"{time} {place} {sender} {text}\n".encode()


@dataclass(frozen=True)
class ChatLine:
    """One line as a member received it, taken apart.

    ``nick`` is who said or did it (None for the server); ``place`` is
    ``#room``, ``@nick`` or ``-``; ``text`` is what was said, done or noticed
    (for an action, without the nick).  ``event`` is the event the line
    shows when it arrived in the JSON rendering (``/format json``), for
    programs to read instead of the text; None for a line that came as text.
    """

    time: str
    place: str
    kind: Kind
    nick: str | None
    text: str
    event: Event | None = field(default=None, compare=False)

    @property
    def room(self) -> str | None:
        """The room the line is about, or None."""
        return self.place if self.place.startswith("#") else None

    @property
    def private(self) -> bool:
        """Whether this is a private message (``/msg``)."""
        return self.place.startswith("@")

    @property
    def error(self) -> bool:
        """Whether this is the server refusing something."""
        return self.kind == "notice" and self.text.startswith("error: ")

    def __str__(self) -> str:
        if self.kind == "said":
            sender, text = f"<{self.nick}>", self.text
        elif self.kind == "action":
            sender, text = ACTION, f"{self.nick} {self.text}"
        else:
            sender, text = SERVER, self.text
        return f"{self.time} {self.place} {sender} {text}"


def parse_line(line: str) -> ChatLine:
    """Take apart one received line (with or without its newline).

    Raises ValueError if it is not in the chat's format.
    """
    fields = line.rstrip("\r\n").split(" ", 3)
    if len(fields) != 4 or len(fields[0]) != 8 or fields[0][2::3] != "::":
        raise ValueError(f"not a chat line: {line!r}")
    time, place, sender, text = fields
    if sender == SERVER:
        return ChatLine(time, place, "notice", None, text)
    if sender == ACTION:
        nick, _, action = text.partition(" ")
        return ChatLine(time, place, "action", nick, action)
    if len(sender) > 2 and sender[0] == "<" and sender[-1] == ">":
        return ChatLine(time, place, "said", sender[1:-1], text)
    raise ValueError(f"not a chat line: {line!r}")
