"""What happens in the chat, as data: the protocol's output before it is rendered.

:class:`~.protocol.ChatProtocol` returns events addressed to a room or to
some members; :mod:`.rendering` turns each into the bytes of one rendering
(text lines for nc and telnet, JSON lines for programs).  Every event holds
``time``, seconds since the epoch on the server's wall clock, for showing.
Text in events is already safe to show (:func:`~socketeer.visible.visible`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "NOTICE_CODES",
    "Acted",
    "Event",
    "History",
    "Joined",
    "Left",
    "Notice",
    "Private",
    "Renamed",
    "Said",
]


@dataclass(frozen=True, slots=True)
class Said:
    """``nick`` said ``text`` in ``room``."""

    time: float
    room: str
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class Acted:
    """``nick`` did ``text`` in ``room`` (``/me``)."""

    time: float
    room: str
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class Private:
    """``sender`` said ``text`` to ``recipient`` alone (``/msg``)."""

    time: float
    sender: str
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class Joined:
    """``nick`` came into ``room``."""

    time: float
    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class Left:
    """``nick`` is no longer in ``room``: it ``left``, ``quit`` or was ``disconnected``.

    ``reason`` is the quit message or why the connection ended ("" for none).
    """

    time: float
    room: str
    nick: str
    how: Literal["left", "quit", "disconnected"]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Renamed:
    """``old`` is now called ``new``; told to the others in ``room``."""

    time: float
    room: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Notice:
    """The server telling one member something: a reply, or (``error``) a refusal.

    ``code`` says which (see :data:`NOTICE_CODES`) and never changes;
    ``text`` is the English for people (lines separated by ``\\n``);
    ``place`` the room it is about, or ``-``; ``data`` the facts a program
    needs (``{"nick": "alice"}`` for ``nick``).
    """

    time: float
    place: str
    code: str
    text: str
    data: Mapping[str, object] = field(default_factory=dict)
    error: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """The last lines said in ``room``, shown to a member joining it."""

    room: str
    events: tuple[Said | Acted, ...]


Event = Said | Acted | Private | Joined | Left | Renamed | Notice | History

#: Every notice code, with what it answers; the ones after "bye" are errors.
NOTICE_CODES: Mapping[str, str] = {
    "welcome": "a new connection: choose a nickname",
    "format": "/format: the rendering the member now receives (data: format)",
    "nick": "your nickname is now data.nick",
    "joined": "you joined data.room; data.nicks are there (data.count in all)",
    "left": "you left data.room",
    "rooms": "/rooms: data.rooms, each with its name and member count",
    "who": "/who: data.nicks are in data.room",
    "help": "/help: data.commands, each with its usage and what it does",
    "degraded": "this server cannot reach the chat's other servers: only its members are reached",
    "restored": "this server reaches the chat's other servers again",
    "bye": "/quit: the server closes the connection",
    "nick-invalid": "not a nickname (data.nick)",
    "nick-taken": "data.nick is taken, or looks like data.holder",
    "nick-same": "you already have that nickname",
    "nick-required": "choose a nickname first",
    "nick-lost": "data.lost was taken on another server during an outage: you are now data.nick",
    "room-invalid": "not a room name (data.room)",
    "room-same": "you are already in data.room",
    "no-room": "you are in no room",
    "too-many-rooms": "data.limit rooms exist already",
    "too-many-rooms-per-address": "your address has data.limit rooms to itself",
    "no-such-nick": "no one is called data.nick",
    "usage": "a command with missing or extra words",
    "unknown-command": "no such command",
    "line-too-long": "a line over data.limit bytes was not sent",
    "too-fast": "lines are being dropped until you slow down",
    "format-unknown": "/format names no rendering this server has (data.formats: the ones it has)",
    "disconnected": "the server is closing the connection because of data.reason",
}
