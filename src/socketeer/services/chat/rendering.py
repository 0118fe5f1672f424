"""Events into bytes: one rendering per kind of client, each event rendered once per rendering.

:data:`TEXT` is the line format of :mod:`.lines`, for nc and telnet.
:data:`JSON` is one JSON object a line, for programs (the terminal client,
browsers)::

    {"type":"said","time":1700000000.5,"room":"#lobby","nick":"alice","text":"hi"}
    {"type":"notice","time":1700000000.5,"place":"#lobby","code":"joined",
     "text":"you joined #lobby; 2 here: alice, bob","room":"#lobby",
     "nicks":["alice","bob"],"count":2}
    {"type":"error","time":1700000000.5,"place":"-","code":"nick-taken",
     "text":"the nickname \\"bob\\" is taken; choose another","nick":"bob","holder":"bob"}

:func:`deliveries` turns the protocol's addressed events into
``(peers, bytes)`` pairs, grouping each audience by rendering, so a line said
in a room is rendered once per rendering in use and the same bytes go to
every member who uses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .events import Acted, Event, History, Joined, Left, Notice, Private, Renamed, Said
from .lines import ACTION, SERVER, Stamp

if TYPE_CHECKING:
    from .room import Member

__all__ = [
    "FORMATS",
    "JSON",
    "TEXT",
    "Addressed",
    "Audience",
    "Delivery",
    "Form",
    "deliveries",
    "group",
    "parse_json",
]

P = TypeVar("P")
#: Who gets which bytes: the same ``data`` is written to every one of ``peers``.
Delivery = tuple[Sequence[P], bytes]
#: Who an event is for: their peers, grouped by the rendering they use.
Audience = Sequence[tuple["Form", tuple[P, ...]]]
#: An event and who it is for.
Addressed = tuple[Audience[P], Event]


class Form:
    """One rendering: how every event is written for one kind of client."""

    name = ""

    def render(self, event: Event) -> bytes:
        """``event`` as the bytes a member using this rendering receives."""
        raise NotImplementedError


class TextForm(Form):
    """``TIME PLACE SENDER TEXT`` lines, as described in :mod:`.lines`."""

    name = "text"

    def __init__(self) -> None:
        self._stamp = Stamp()

    def render(self, event: Event) -> bytes:
        return self.line(event).encode()

    def line(self, event: Event) -> str:
        """``event`` as text lines, each with its newline."""
        match event:
            case Said(time, room, nick, text):
                return f"{self._stamp(time)} {room} <{nick}> {text}\n"
            case Acted(time, room, nick, text):
                return f"{self._stamp(time)} {room} {ACTION} {nick} {text}\n"
            case Private(time, sender, recipient, text):
                return f"{self._stamp(time)} @{recipient} <{sender}> {text}\n"
            case Joined(time, room, nick):
                return f"{self._stamp(time)} {room} {SERVER} {nick} joined {room}\n"
            case Left(time, room, nick, how, reason):
                what = f"left {room}" if how == "left" else how
                why = f" ({reason})" if reason else ""
                return f"{self._stamp(time)} {room} {SERVER} {nick} {what}{why}\n"
            case Renamed(time, room, old, new):
                return f"{self._stamp(time)} {room} {SERVER} {old} is now known as {new}\n"
            case Notice(time, place, _, text, _, error):
                head = f"{self._stamp(time)} {place} {SERVER} {'error: ' if error else ''}"
                return "".join(f"{head}{line}\n" for line in text.split("\n"))
            case History(_, events):
                return "".join(self.line(past) for past in events)
        raise TypeError(f"not a chat event: {event!r}")


class JsonForm(Form):
    """One JSON object a line; ``type`` says which event, the other keys are its fields."""

    name = "json"

    def render(self, event: Event) -> bytes:
        if isinstance(event, History):
            return b"".join(self.render(past) for past in event.events)
        return (
            json.dumps(self.fields(event), ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode()

    @staticmethod
    def fields(event: Event) -> dict[str, object]:
        """``event`` as the JSON object's fields."""
        match event:
            case Said(time, room, nick, text):
                return {"type": "said", "time": time, "room": room, "nick": nick, "text": text}
            case Acted(time, room, nick, text):
                return {"type": "action", "time": time, "room": room, "nick": nick, "text": text}
            case Private(time, sender, recipient, text):
                return {
                    "type": "private",
                    "time": time,
                    "from": sender,
                    "to": recipient,
                    "text": text,
                }
            case Joined(time, room, nick):
                return {"type": "joined", "time": time, "room": room, "nick": nick}
            case Left(time, room, nick, how, reason):
                return {
                    "type": "left",
                    "time": time,
                    "room": room,
                    "nick": nick,
                    "how": how,
                    "reason": reason,
                }
            case Renamed(time, room, old, new):
                return {"type": "renamed", "time": time, "room": room, "old": old, "new": new}
            case Notice(time, place, code, text, data, error):
                kind = "error" if error else "notice"
                return {
                    "type": kind,
                    "time": time,
                    "place": place,
                    "code": code,
                    "text": text,
                    **data,
                }
        raise TypeError(f"not a chat event: {event!r}")


#: The line format of :mod:`.lines`, for nc and telnet.
TEXT = TextForm()
#: One JSON object a line, for programs.
JSON = JsonForm()
#: The renderings a member may ask for (``/format NAME``), by name.
FORMATS: dict[str, Form] = {form.name: form for form in (TEXT, JSON)}


def deliveries(addressed: Iterable[Addressed[P]]) -> list[Delivery[P]]:
    """Render each event once per rendering its audience uses; the bytes for whom they are."""
    return [
        (peers, form.render(event)) for audience, event in addressed for form, peers in audience
    ]


def group(members: Iterable[Member[P]]) -> Audience[P]:
    """``members``' peers, grouped by the rendering each uses."""
    by_form: dict[Form, list[P]] = {}
    for member in members:
        by_form.setdefault(member.form, []).append(member.peer)
    return [(form, tuple(peers)) for form, peers in by_form.items()]


_NOTICE_KEYS = frozenset(("type", "time", "place", "code", "text"))


def parse_json(line: str | bytes) -> Event:
    """The event one line of the JSON rendering describes.

    Raises ValueError for a line that is not one.
    """
    try:
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise TypeError("not an object")
        return _event(fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a chat event: {line!r}") from exc


def _event(fields: dict[str, object]) -> Event:
    def text(key: str) -> str:
        value = fields[key]
        if not isinstance(value, str):
            raise TypeError(f"{key} is not a string")
        return value

    kind = text("type")
    time = fields["time"]
    if isinstance(time, bool) or not isinstance(time, int | float):
        raise TypeError("time is not a number")
    match kind:
        case "said":
            return Said(time, text("room"), text("nick"), text("text"))
        case "action":
            return Acted(time, text("room"), text("nick"), text("text"))
        case "private":
            return Private(time, text("from"), text("to"), text("text"))
        case "joined":
            return Joined(time, text("room"), text("nick"))
        case "left":
            how = text("how")
            if how not in ("left", "quit", "disconnected"):
                raise ValueError(f"no such way to leave: {how!r}")
            return Left(time, text("room"), text("nick"), how, text("reason"))  # type: ignore[arg-type]
        case "renamed":
            return Renamed(time, text("room"), text("old"), text("new"))
        case "notice" | "error":
            data = {key: value for key, value in fields.items() if key not in _NOTICE_KEYS}
            place, code, said = text("place"), text("code"), text("text")
            return Notice(time, place, code, said, data, error=kind == "error")
    raise ValueError(f"no such event: {kind!r}")
