"""The chat itself, without I/O: members, rooms, commands, history and limits.

A :class:`ChatProtocol` is fed what each member sends, with the time, and
returns deliveries: ``(peers, data)`` pairs saying which members get which
bytes.  A line said in a room is formatted once and the same bytes go to
every member of the room.  Two clocks are passed in: ``now``, seconds on a
clock that never jumps (``time.monotonic()``), for the limits, and ``wall``,
seconds since the epoch (``time.time()``), only for the times shown to people.
The I/O layer (:mod:`.session`) writes the deliveries, and tells the chat
when a connection starts and ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ...visible import visible
from .commands import (
    COMMAND_HELP,
    Act,
    Help,
    Invalid,
    Join,
    Leave,
    Msg,
    Nick,
    Quit,
    Rooms,
    Say,
    Who,
    parse_command,
)
from .incoming import LineSplitter, Overlong
from .lines import ACTION, NOWHERE, SERVER, Stamp, format_line
from .names import name_key, nick_problem, room_name
from .ratelimit import TokenBucket
from .room import Member, Room

__all__ = ["ChatProtocol", "ChatSettings", "Delivery"]

P = TypeVar("P")
#: Who gets which bytes: the same ``data`` is written to every one of ``peers``.
Delivery = tuple[Sequence[P], bytes]

WELCOME = (
    "welcome to socketeer chat! choose a nickname: type it, or /nick NAME"
    " (/help lists the commands)"
)
#: How many names "you joined" lists before saying how many more there are.
JOIN_NAMES = 20


@dataclass(frozen=True)
class ChatSettings:
    """The chat's rules.

    ``default_room`` is where members land after choosing a nickname.
    ``history`` is how many lines a joining member is shown.  ``rate`` lines
    a second (0: no limit) with bursts of ``burst`` is how fast a member may
    send.  A line over ``max_line_length`` bytes is refused.  At most
    ``max_rooms`` rooms exist at once, and members from one address may not
    create a room while ``max_rooms_per_address`` rooms have only them in it.
    """

    default_room: str = "lobby"
    history: int = 50
    rate: float = 5.0
    burst: int = 10
    max_line_length: int = 4096
    max_rooms: int = 1000
    max_rooms_per_address: int = 10

    def __post_init__(self) -> None:
        problem = room_name(self.default_room)[1]
        if problem:
            raise ValueError(f"default room {self.default_room!r}: {problem}")
        for name in ("history", "rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("burst", "max_line_length", "max_rooms", "max_rooms_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class ChatProtocol(Generic[P]):
    """Every member and room of one chat; each method returns the deliveries it causes."""

    def __init__(self, settings: ChatSettings | None = None) -> None:
        self.settings = settings = settings or ChatSettings()
        default = Room[P](room_name(settings.default_room)[0], settings.history)
        self._default_room = name_key(default.name)
        #: Every room, by the key of its name (see :func:`.names.name_key`).
        self._rooms: dict[str, Room[P]] = {self._default_room: default}
        self._members: dict[str, Member[P]] = {}
        self._stamp = Stamp()

    # what the I/O layer calls -----------------------------------------------------

    def connect(
        self, peer: P, now: float, wall: float, address: str = ""
    ) -> tuple[Member[P], list[Delivery[P]]]:
        """A connection arrived from ``address``: return its member (not yet named) and the welcome.

        ``address`` is what per-address limits count by (see
        :func:`.addresses.member_address`); members given the same one share them.
        """
        settings = self.settings
        member = Member(
            peer,
            LineSplitter(settings.max_line_length),
            TokenBucket(settings.rate, settings.burst, now),
            address,
        )
        return member, [((peer,), self._notice(wall, NOWHERE, WELCOME))]

    def receive(self, member: Member[P], data: bytes, now: float, wall: float) -> list[Delivery[P]]:
        """``member`` sent ``data``: act on every line it completes."""
        out: list[Delivery[P]] = []
        for line in member.splitter.feed(data):
            if member.gone:
                break
            self._line(member, line, now, wall, out)
        return out

    def end_of_input(self, member: Member[P], now: float, wall: float) -> list[Delivery[P]]:
        """``member`` will send nothing more: act on a last unfinished line, then let it go."""
        out: list[Delivery[P]] = []
        for line in member.splitter.end():
            if not member.gone:
                self._line(member, line, now, wall, out)
        out += self.disconnect(member, wall)
        return out

    def disconnect(self, member: Member[P], wall: float, reason: str = "") -> list[Delivery[P]]:
        """``member``'s connection is gone (or being closed because of ``reason``)."""
        if member.gone:
            return []
        why = f" ({reason})" if reason else ""
        return self._depart(member, wall, f"disconnected{why}")

    def error_line(self, wall: float, reason: str) -> bytes:
        """The line that tells a member why it is being disconnected."""
        return self._notice(wall, NOWHERE, f"error: {reason}")

    # what tests and the I/O layer may look at ---------------------------------------

    @property
    def member_count(self) -> int:
        """How many members have a nickname."""
        return len(self._members)

    def room_nicks(self, room: str) -> list[str]:
        """Who is in ``room`` (``#name`` or ``name``); empty if there is no such room."""
        found = self._rooms.get(name_key(room_name(room)[0]))
        return found.nicks() if found else []

    # one line -----------------------------------------------------------------------

    def _line(
        self,
        member: Member[P],
        line: str | Overlong,
        now: float,
        wall: float,
        out: list[Delivery[P]],
    ) -> None:
        if isinstance(line, Overlong):
            self._error(member, wall, f"line too long (over {line.limit} bytes); not sent", out)
            return
        if not line.strip():
            return
        command = parse_command(line)
        if not isinstance(command, Quit) and not member.bucket.allow(now):
            if not member.throttled:
                member.throttled = True
                rate = self.settings.rate
                limit = f"{rate:g} line{'' if rate == 1 else 's'} a second"
                reason = (
                    f"you are sending too fast (at most {limit});"
                    " lines are dropped until you slow down"
                )
                self._error(member, wall, reason, out)
            return
        if member.throttled and member.bucket.tokens >= member.bucket.burst - 1:
            member.throttled = False  # it slowed down: a new flood gets a new notice
        match command:
            case Say(text):
                if member.nick is None:
                    self._name(member, text.strip(), wall, out)
                else:
                    self._say(member, text, wall, out)
            case Act(text):
                self._act(member, text, wall, out)
            case Nick(name):
                self._name(member, name, wall, out)
            case Join(room):
                self._join(member, room, wall, out)
            case Leave():
                self._leave(member, wall, out)
            case Rooms():
                self._list_rooms(member, wall, out)
            case Who():
                self._who(member, wall, out)
            case Msg(nick, text):
                self._msg(member, nick, text, wall, out)
            case Help():
                self._help(member, wall, out)
            case Quit(text):
                self._quit(member, text, wall, out)
            case Invalid(reason):
                self._error(member, wall, reason, out)

    # messages -----------------------------------------------------------------------

    def _say(self, member: Member[P], text: str, wall: float, out: list[Delivery[P]]) -> None:
        room = member.room
        if room is None:
            self._error(member, wall, "you are in no room; /join ROOM to join one", out)
            return
        line = f"{self._stamp(wall)} {room.name} <{member.nick}> {visible(text)}\n".encode()
        room.history.append(line)
        out.append((room.peers(), line))

    def _act(self, member: Member[P], text: str, wall: float, out: list[Delivery[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "you are in no room; /join ROOM to join one", out)
            return
        line = format_line(self._stamp(wall), room.name, ACTION, f"{member.nick} {visible(text)}")
        room.history.append(line)
        out.append((room.peers(), line))

    def _msg(
        self, member: Member[P], nick: str, text: str, wall: float, out: list[Delivery[P]]
    ) -> None:
        if not self._named(member, wall, out):
            return
        target = self._members.get(name_key(nick))
        if target is None:
            self._error(member, wall, f'no one is called "{visible(nick)}"', out)
            return
        line = format_line(self._stamp(wall), f"@{target.nick}", f"<{member.nick}>", visible(text))
        peers = (member.peer,) if target is member else (target.peer, member.peer)
        out.append((peers, line))

    # names and rooms ----------------------------------------------------------------

    def _name(self, member: Member[P], nick: str, wall: float, out: list[Delivery[P]]) -> None:
        problem = nick_problem(nick)
        if problem:
            self._error(member, wall, f'"{visible(nick)}" cannot be a nickname: {problem}', out)
            return
        old = member.nick
        if old == nick:
            self._error(member, wall, f'you are already called "{nick}"', out)
            return
        key = name_key(nick)
        holder = self._members.get(key)
        if holder is not None and holder is not member:
            same = holder.nick is None or holder.nick.casefold() == nick.casefold()
            alike = "" if same else f' (it looks like "{holder.nick}")'
            self._error(member, wall, f'the nickname "{nick}" is taken{alike}; choose another', out)
            return
        member.nick = nick
        if old is not None:
            del self._members[name_key(old)]
        self._members[key] = member
        out.append(((member.peer,), self._notice(wall, NOWHERE, f"you are now known as {nick}")))
        if old is None:
            self._enter(member, self._rooms[self._default_room], wall, out)
            return
        room = member.room
        if room is not None:
            room.rename(member, old)
            others = room.others(member)
            if others:
                out.append((others, self._notice(wall, room.name, f"{old} is now known as {nick}")))

    def _join(self, member: Member[P], typed: str, wall: float, out: list[Delivery[P]]) -> None:
        if not self._named(member, wall, out):
            return
        name, problem = room_name(typed)
        if problem:
            self._error(member, wall, f'"{visible(typed)}" cannot be a room: {problem}', out)
            return
        old = member.room
        key = name_key(name)
        if old is not None and name_key(old.name) == key:
            self._error(member, wall, f"you are already in {old.name}", out)
            return
        room = self._rooms.get(key)
        if room is None:
            refusal = self._no_new_room(member)
            if refusal:
                self._error(member, wall, refusal, out)
                return
            room = self._rooms[key] = Room(name, self.settings.history)
        if old is not None:
            self._exit(member, old, wall, f"{member.nick} left {old.name}", out)
        self._enter(member, room, wall, out)

    def _no_new_room(self, member: Member[P]) -> str | None:
        """Why ``member`` may not create a room now, or None if it may.

        The room ``member`` leaves by moving counts no more if it empties.
        """
        settings = self.settings
        default = self._default_room
        old = member.room
        emptied = int(old is not None and len(old.members) == 1 and name_key(old.name) != default)
        if len(self._rooms) - emptied >= settings.max_rooms:
            return f"there are {settings.max_rooms} rooms already; /rooms lists them"
        address = member.address
        limit = settings.max_rooms_per_address
        rooms = self._rooms.items()
        held = sum(room.held_by(address) for key, room in rooms if key != default) - emptied
        if held >= limit:
            return (
                f"your address already has {limit} rooms to itself;"
                " join a room others are in, or leave one of yours"
            )
        return None

    def _enter(self, member: Member[P], room: Room[P], wall: float, out: list[Delivery[P]]) -> None:
        others = room.peers()
        room.add(member)
        if others:
            out.append((others, self._notice(wall, room.name, f"{member.nick} joined {room.name}")))
        me = (member.peer,)
        if room.history:
            out.append((me, b"".join(room.history)))
        nicks = room.nicks()
        listed = ", ".join(nicks[:JOIN_NAMES])
        if len(nicks) > JOIN_NAMES:
            listed += f" and {len(nicks) - JOIN_NAMES} more (/who lists everyone)"
        text = f"you joined {room.name}; {len(nicks)} here: {listed}"
        out.append((me, self._notice(wall, room.name, text)))

    def _exit(
        self,
        member: Member[P],
        room: Room[P],
        wall: float,
        announcement: str,
        out: list[Delivery[P]],
    ) -> None:
        room.remove(member)
        if room.members:
            out.append((room.peers(), self._notice(wall, room.name, announcement)))
        elif (key := name_key(room.name)) != self._default_room:
            del self._rooms[key]

    def _leave(self, member: Member[P], wall: float, out: list[Delivery[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "you are in no room", out)
            return
        self._exit(member, room, wall, f"{member.nick} left {room.name}", out)
        text = f"you left {room.name}; /join ROOM to join one"
        out.append(((member.peer,), self._notice(wall, room.name, text)))

    def _depart(self, member: Member[P], wall: float, how: str) -> list[Delivery[P]]:
        out: list[Delivery[P]] = []
        member.gone = True
        if member.nick is not None:
            del self._members[name_key(member.nick)]
            if member.room is not None:
                self._exit(member, member.room, wall, f"{member.nick} {how}", out)
        return out

    def _quit(self, member: Member[P], text: str, wall: float, out: list[Delivery[P]]) -> None:
        out.append(((member.peer,), self._notice(wall, NOWHERE, "bye")))
        member.finished = True
        out += self._depart(member, wall, f"quit ({visible(text)})" if text else "quit")

    # listings -----------------------------------------------------------------------

    def _list_rooms(self, member: Member[P], wall: float, out: list[Delivery[P]]) -> None:
        rooms = sorted(self._rooms.values(), key=lambda room: room.name)
        listed = ", ".join(f"{room.name} ({len(room.members)})" for room in rooms)
        out.append(((member.peer,), self._notice(wall, NOWHERE, f"rooms: {listed}")))

    def _who(self, member: Member[P], wall: float, out: list[Delivery[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "you are in no room; /rooms lists them", out)
            return
        nicks = room.nicks()
        text = f"{len(nicks)} in {room.name}: {', '.join(nicks)}"
        out.append(((member.peer,), self._notice(wall, room.name, text)))

    def _help(self, member: Member[P], wall: float, out: list[Delivery[P]]) -> None:
        width = max(len(usage) for usage, _ in COMMAND_HELP)
        lines = [self._notice(wall, NOWHERE, "commands (anything else is said to your room):")]
        lines += [
            self._notice(wall, NOWHERE, f"{usage.ljust(width)}  {what}")
            for usage, what in COMMAND_HELP
        ]
        out.append(((member.peer,), b"".join(lines)))

    # replies ------------------------------------------------------------------------

    def _named(self, member: Member[P], wall: float, out: list[Delivery[P]]) -> bool:
        if member.nick is None:
            self._error(member, wall, "choose a nickname first: type it, or /nick NAME", out)
            return False
        return True

    def _notice(self, wall: float, place: str, text: str) -> bytes:
        return format_line(self._stamp(wall), place, SERVER, text)

    def _error(self, member: Member[P], wall: float, reason: str, out: list[Delivery[P]]) -> None:
        out.append(((member.peer,), self._notice(wall, NOWHERE, f"error: {reason}")))
