"""The chat itself, without I/O: members, rooms, commands, history and limits.

A :class:`ChatProtocol` is fed what each member sends, with the time, and
returns events (:mod:`.events`) addressed to a room or to some members:
who said what, who joined, left or was renamed, and notices with a stable
code.  :func:`.rendering.deliveries` turns them into bytes, once per
rendering in use (text lines, JSON lines), and the I/O layer
(:mod:`.session`) writes them and tells the chat when a connection starts
and ends.  Two clocks are passed in: ``now``, seconds on a clock that never
jumps (``time.monotonic()``), for the limits, and ``wall``, seconds since the
epoch (``time.time()``), only for the times shown to people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from ...ratelimit import TokenBucket
from ...visible import visible
from .commands import (
    COMMAND_HELP,
    LOGIN_HELP,
    Act,
    Format,
    Help,
    Invalid,
    Join,
    Leave,
    Login,
    Msg,
    Nick,
    Quit,
    Rooms,
    Say,
    Who,
    parse_command,
)
from .events import Acted, History, Joined, Left, Notice, Private, Renamed, Said
from .incoming import LineSplitter, Overlong
from .lines import NOWHERE
from .logins import LoginCheck, Registry, pass_line
from .names import name_key, nick_problem, room_name
from .rendering import FORMATS, TEXT, Addressed, Audience, Delivery, group
from .room import Member, Room

__all__ = ["Addressed", "ChatProtocol", "ChatSettings", "Delivery"]

P = TypeVar("P")

WELCOME = (
    "welcome to socketeer chat! choose a nickname: type it, or /nick NAME"
    " (/help lists the commands)"
)
#: How many names "you joined" lists before saying how many more there are.
JOIN_NAMES = 20


def _to(member: Member[P]) -> Audience[P]:
    """``member`` alone, as an audience."""
    return ((member.form, (member.peer,)),)


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
    """Every member and room of one chat; each method returns the events it causes."""

    def __init__(
        self, settings: ChatSettings | None = None, registry: Registry | None = None
    ) -> None:
        #: Registered nicknames (a users file), or None: every nickname is free.
        self.registry = registry
        self._checks: list[LoginCheck[P]] = []
        self.settings = settings = settings or ChatSettings()
        default = Room[P](room_name(settings.default_room)[0], settings.history)
        self._default_room = name_key(default.name)
        #: Every room, by the key of its name (see :func:`.names.name_key`).
        self._rooms: dict[str, Room[P]] = {self._default_room: default}
        self._members: dict[str, Member[P]] = {}

    # what the I/O layer calls -----------------------------------------------------

    def connect(
        self, peer: P, now: float, wall: float, address: str = ""
    ) -> tuple[Member[P], list[Addressed[P]]]:
        """A connection arrived from ``address``: return its member (not yet named) and the welcome.

        ``address`` is what per-address limits count by (see
        :func:`socketeer.addresses.address_key`); members given the same one share them.
        """
        settings = self.settings
        member = Member(
            peer,
            LineSplitter(settings.max_line_length),
            TokenBucket(settings.rate, settings.burst, now),
            address,
        )
        return member, [(_to(member), Notice(wall, NOWHERE, "welcome", WELCOME))]

    def receive(
        self, member: Member[P], data: bytes, now: float, wall: float
    ) -> list[Addressed[P]]:
        """``member`` sent ``data``: act on every line it completes."""
        out: list[Addressed[P]] = []
        for line in member.splitter.feed(data):
            if member.gone:
                break
            self._line(member, line, now, wall, out)
        return out

    def end_of_input(self, member: Member[P], now: float, wall: float) -> list[Addressed[P]]:
        """``member`` will send nothing more: act on a last unfinished line, then let it go."""
        out: list[Addressed[P]] = []
        for line in member.splitter.end():
            if not member.gone:
                self._line(member, line, now, wall, out)
        out += self.disconnect(member, wall)
        return out

    def take_checks(self) -> list[LoginCheck[P]]:
        """Passwords to check (slow: in a thread), asked for since the last call.

        Answer each with :meth:`checked`; until then the member's lines wait.
        """
        checks, self._checks = self._checks, []
        return checks

    def checked(
        self, member: Member[P], check: LoginCheck[P], refusal: str | None, now: float, wall: float
    ) -> list[Addressed[P]]:
        """The answer to ``check``: None if the password was right, else why it was refused.

        Then the lines that waited for it are acted on.
        """
        out: list[Addressed[P]] = []
        held, member.held = member.held or [], None
        if member.gone:
            return out
        account = self.registry.accounts.find(check.name) if self.registry else None
        if refusal is None and account is not None:
            member.account = account.name
            if member.nick == account.name:
                text = f"you are logged in as {account.name}"
                out.append((_to(member), Notice(wall, NOWHERE, "logged-in", text)))
            else:
                self._name(member, account.name, wall, out)
        else:
            shown = visible(check.name)
            reason = refusal or "wrong password"
            self._error(member, wall, "login-failed", f"{shown}: {reason}", out, nick=shown)
        for index, line in enumerate(held):
            if member.gone:
                break
            if member.held is not None:  # another check began: the rest waits for it
                member.held.extend(held[index:])
                break
            self._line(member, line, now, wall, out)
        return out

    def disconnect(self, member: Member[P], wall: float, reason: str = "") -> list[Addressed[P]]:
        """``member``'s connection is gone (or being closed because of ``reason``)."""
        if member.gone:
            return []
        return self._depart(member, wall, "disconnected", reason)

    def error_line(self, wall: float, reason: str, member: Member[P] | None = None) -> bytes:
        """The line that tells ``member`` why it is being disconnected, in its rendering."""
        form = TEXT if member is None else member.form
        error = Notice(wall, NOWHERE, "disconnected", reason, {"reason": reason}, error=True)
        return form.render(error)

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
        out: list[Addressed[P]],
    ) -> None:
        if isinstance(line, Overlong):
            text = f"line too long (over {line.limit} bytes); not sent"
            self._error(member, wall, "line-too-long", text, out, limit=line.limit)
            return
        if not line.strip():
            return
        if member.held is not None:  # a password is being checked: wait for it
            member.held.append(line)
            return
        password = pass_line(line)
        if password is not None and (member.nick is None or self.registry is not None):
            self._pass(member, password, wall, out)
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
                self._error(member, wall, "too-fast", reason, out, rate=rate)
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
            case Format(name):
                self._format(member, name, wall, out)
            case Login(name, password):
                self._login(member, name, password, out, wall)
            case Invalid(reason, code):
                self._error(member, wall, code, reason, out)

    # messages -----------------------------------------------------------------------

    def _say(self, member: Member[P], text: str, wall: float, out: list[Addressed[P]]) -> None:
        room = member.room
        if room is None:
            self._error(member, wall, "no-room", "you are in no room; /join ROOM to join one", out)
            return
        assert member.nick is not None
        event = Said(wall, room.name, member.nick, visible(text))
        room.history.append(event)
        out.append((room.audience(), event))

    def _act(self, member: Member[P], text: str, wall: float, out: list[Addressed[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "no-room", "you are in no room; /join ROOM to join one", out)
            return
        assert member.nick is not None
        event = Acted(wall, room.name, member.nick, visible(text))
        room.history.append(event)
        out.append((room.audience(), event))

    def _msg(
        self, member: Member[P], nick: str, text: str, wall: float, out: list[Addressed[P]]
    ) -> None:
        if not self._named(member, wall, out):
            return
        target = self._members.get(name_key(nick))
        if target is None:
            shown = visible(nick)
            reply = f'no one is called "{shown}"'
            self._error(member, wall, "no-such-nick", reply, out, nick=shown)
            return
        assert member.nick is not None
        assert target.nick is not None
        event = Private(wall, member.nick, target.nick, visible(text))
        out.append((_to(member) if target is member else group((target, member)), event))

    # names and rooms ----------------------------------------------------------------

    def _name(self, member: Member[P], nick: str, wall: float, out: list[Addressed[P]]) -> None:
        problem = nick_problem(nick)
        shown = visible(nick)
        if problem:
            reply = f'"{shown}" cannot be a nickname: {problem}'
            self._error(member, wall, "nick-invalid", reply, out, nick=shown)
            return
        old = member.nick
        if old == nick:
            reply = f'you are already called "{nick}"'
            self._error(member, wall, "nick-same", reply, out, nick=nick)
            return
        if self._needs_login(member, nick, wall, out):
            return
        key = name_key(nick)
        holder = self._members.get(key)
        if holder is not None and holder is not member and holder.nick is not None:
            same = holder.nick.casefold() == nick.casefold()
            alike = "" if same else f' (it looks like "{holder.nick}")'
            reply = f'the nickname "{nick}" is taken{alike}; choose another'
            self._error(member, wall, "nick-taken", reply, out, nick=nick, holder=holder.nick)
            return
        member.nick = nick
        if old is not None:
            del self._members[name_key(old)]
        self._members[key] = member
        text = f"you are now known as {nick}"
        out.append((_to(member), Notice(wall, NOWHERE, "nick", text, {"nick": nick})))
        if old is None:
            self._enter(member, self._rooms[self._default_room], wall, out)
            return
        room = member.room
        if room is not None:
            room.rename(member, old)
            others = room.others(member)
            if others:
                out.append((others, Renamed(wall, room.name, old, nick)))

    # registered nicknames --------------------------------------------------------

    def _needs_login(
        self, member: Member[P], nick: str, wall: float, out: list[Addressed[P]]
    ) -> bool:
        """Whether ``nick`` cannot be taken yet: a password is due (or being checked)."""
        registry = self.registry
        if registry is None:
            return False
        account = registry.accounts.find(nick)
        if account is None:
            if registry.registered_only:
                reply = (
                    "this chat takes registered nicknames only:"
                    " /login NAME PASSWORD (or PASS PASSWORD before the nickname)"
                )
                self._error(member, wall, "nick-unregistered", reply, out, nick=nick)
                return True
            return False
        if member.account == account.name:
            return False
        if member.password is not None:
            password, member.password = member.password, None
            self._begin_check(member, nick, password)
            return True
        reply = (
            f'the nickname "{nick}" is registered: /login {nick} PASSWORD'
            " (or PASS PASSWORD before the nickname)"
        )
        self._error(member, wall, "nick-registered", reply, out, nick=nick)
        return True

    def _pass(self, member: Member[P], password: str, wall: float, out: list[Addressed[P]]) -> None:
        if self.registry is None:
            reply = "this chat has no accounts; choose a nickname"
            self._error(member, wall, "no-accounts", reply, out)
        elif member.nick is not None:
            reply = "PASS comes before the nickname; now use /login NAME PASSWORD"
            self._error(member, wall, "usage", reply, out)
        else:
            member.password = password
            text = "password noted: now your (registered) nickname"
            out.append((_to(member), Notice(wall, NOWHERE, "pass", text)))

    def _login(
        self, member: Member[P], name: str, password: str, out: list[Addressed[P]], wall: float
    ) -> None:
        if self.registry is None:
            self._error(member, wall, "no-accounts", "this chat has no accounts", out)
            return
        self._begin_check(member, name, password)

    def _begin_check(self, member: Member[P], name: str, password: str) -> None:
        member.held = []
        self._checks.append(LoginCheck(member.peer, name, password))

    def _join(self, member: Member[P], typed: str, wall: float, out: list[Addressed[P]]) -> None:
        if not self._named(member, wall, out):
            return
        name, problem = room_name(typed)
        if problem:
            shown = visible(typed)
            reply = f'"{shown}" cannot be a room: {problem}'
            self._error(member, wall, "room-invalid", reply, out, room=shown)
            return
        old = member.room
        key = name_key(name)
        if old is not None and name_key(old.name) == key:
            reply = f"you are already in {old.name}"
            self._error(member, wall, "room-same", reply, out, room=old.name)
            return
        room = self._rooms.get(key)
        if room is None:
            refusal = self._no_new_room(member)
            if refusal:
                code, reply, limit = refusal
                self._error(member, wall, code, reply, out, limit=limit)
                return
            room = self._rooms[key] = Room(name, self.settings.history)
        if old is not None:
            self._exit(member, old, Left(wall, old.name, member.nick or "", "left"), out)
        self._enter(member, room, wall, out)

    def _no_new_room(self, member: Member[P]) -> tuple[str, str, int] | None:
        """Why ``member`` may not create a room now (code, text, limit), or None if it may.

        The room ``member`` leaves by moving counts no more if it empties.
        """
        settings = self.settings
        default = self._default_room
        old = member.room
        emptied = int(old is not None and len(old.members) == 1 and name_key(old.name) != default)
        if len(self._rooms) - emptied >= settings.max_rooms:
            limit = settings.max_rooms
            return "too-many-rooms", f"there are {limit} rooms already; /rooms lists them", limit
        address = member.address
        limit = settings.max_rooms_per_address
        rooms = self._rooms.items()
        held = sum(room.held_by(address) for key, room in rooms if key != default) - emptied
        if held >= limit:
            reply = (
                f"your address already has {limit} rooms to itself;"
                " join a room others are in, or leave one of yours"
            )
            return "too-many-rooms-per-address", reply, limit
        return None

    def _enter(
        self, member: Member[P], room: Room[P], wall: float, out: list[Addressed[P]]
    ) -> None:
        assert member.nick is not None
        if room.members:
            out.append((room.audience(), Joined(wall, room.name, member.nick)))
        room.add(member)
        me = _to(member)
        if room.history:
            out.append((me, History(room.name, tuple(room.history))))
        nicks = room.nicks()
        listed = ", ".join(nicks[:JOIN_NAMES])
        if len(nicks) > JOIN_NAMES:
            listed += f" and {len(nicks) - JOIN_NAMES} more (/who lists everyone)"
        text = f"you joined {room.name}; {len(nicks)} here: {listed}"
        data = {"room": room.name, "nicks": nicks, "count": len(nicks)}
        out.append((me, Notice(wall, room.name, "joined", text, data)))

    def _exit(self, member: Member[P], room: Room[P], left: Left, out: list[Addressed[P]]) -> None:
        room.remove(member)
        if room.members:
            out.append((room.audience(), left))
        elif (key := name_key(room.name)) != self._default_room:
            del self._rooms[key]

    def _leave(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "no-room", "you are in no room", out)
            return
        self._exit(member, room, Left(wall, room.name, member.nick or "", "left"), out)
        text = f"you left {room.name}; /join ROOM to join one"
        out.append((_to(member), Notice(wall, room.name, "left", text, {"room": room.name})))

    def _depart(
        self, member: Member[P], wall: float, how: Literal["quit", "disconnected"], reason: str
    ) -> list[Addressed[P]]:
        out: list[Addressed[P]] = []
        member.gone = True
        if member.nick is not None:
            del self._members[name_key(member.nick)]
            if member.room is not None:
                left = Left(wall, member.room.name, member.nick, how, reason)
                self._exit(member, member.room, left, out)
        return out

    def _quit(self, member: Member[P], text: str, wall: float, out: list[Addressed[P]]) -> None:
        out.append((_to(member), Notice(wall, NOWHERE, "bye", "bye")))
        member.finished = True
        out += self._depart(member, wall, "quit", visible(text))

    def _format(self, member: Member[P], name: str, wall: float, out: list[Addressed[P]]) -> None:
        form = FORMATS.get(name)
        if form is None:
            known = " or ".join(FORMATS)
            reply = f'no format called "{visible(name)}"; use {known}'
            self._error(member, wall, "format-unknown", reply, out, formats=list(FORMATS))
            return
        member.form = form
        if member.room is not None:
            member.room.changed()
        text = f"lines are now sent as {form.name}"
        out.append((_to(member), Notice(wall, NOWHERE, "format", text, {"format": form.name})))

    # listings -----------------------------------------------------------------------

    def _list_rooms(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> None:
        rooms = sorted(self._rooms.values(), key=lambda room: room.name)
        listed = ", ".join(f"{room.name} ({len(room.members)})" for room in rooms)
        data = {"rooms": [{"room": room.name, "count": len(room.members)} for room in rooms]}
        out.append((_to(member), Notice(wall, NOWHERE, "rooms", f"rooms: {listed}", data)))

    def _who(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "no-room", "you are in no room; /rooms lists them", out)
            return
        nicks = room.nicks()
        text = f"{len(nicks)} in {room.name}: {', '.join(nicks)}"
        data = {"room": room.name, "nicks": nicks}
        out.append((_to(member), Notice(wall, room.name, "who", text, data)))

    def _help(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> None:
        listed = (*COMMAND_HELP, LOGIN_HELP) if self.registry is not None else COMMAND_HELP
        width = max(len(usage) for usage, _ in listed)
        lines = ["commands (anything else is said to your room):"]
        lines += [f"{usage.ljust(width)}  {what}" for usage, what in listed]
        data = {"commands": [{"usage": usage, "what": what} for usage, what in listed]}
        out.append((_to(member), Notice(wall, NOWHERE, "help", "\n".join(lines), data)))

    # replies ------------------------------------------------------------------------

    def _named(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> bool:
        if member.nick is None:
            reply = "choose a nickname first: type it, or /nick NAME"
            self._error(member, wall, "nick-required", reply, out)
            return False
        return True

    @staticmethod
    def _error(
        member: Member[P],
        wall: float,
        code: str,
        text: str,
        out: list[Addressed[P]],
        **data: object,
    ) -> None:
        out.append((_to(member), Notice(wall, NOWHERE, code, text, data, error=True)))
