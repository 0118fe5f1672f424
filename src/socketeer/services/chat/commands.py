"""What a member typed: a message, an action, or a command, parsed from one line of text.

Plain lines are messages.  A line starting with ``/`` is a command; ``//``
sends a message that starts with ``/``.  Command names are case-insensitive
and IRC's names work too (``/part``, ``/list``, ``/names``, ``/exit``).
:func:`parse_command` never raises: a malformed command becomes
:class:`Invalid` carrying the reason to show the member.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "COMMAND_HELP",
    "LOGIN_HELP",
    "OFFER_HELP",
    "Accept",
    "Act",
    "Command",
    "Decline",
    "Format",
    "Help",
    "Invalid",
    "Join",
    "Leave",
    "Login",
    "Msg",
    "Nick",
    "Offer",
    "Offered",
    "Online",
    "Ping",
    "Quit",
    "Received",
    "Rooms",
    "Say",
    "Switch",
    "Who",
    "parse_command",
]


@dataclass(frozen=True)
class Say:
    """A plain line: a message to the current room (or, before login, the nickname)."""

    text: str


@dataclass(frozen=True)
class Act:
    """``/me ACTION``: an action in the current room."""

    text: str


@dataclass(frozen=True)
class Nick:
    """``/nick NAME``: choose or change the nickname."""

    name: str


@dataclass(frozen=True)
class Join:
    """``/join ROOM``: also be in a room (created when it does not exist), and talk there."""

    room: str


@dataclass(frozen=True)
class Leave:
    """``/leave [ROOM]``: leave a room (None: the current one)."""

    room: str | None = None


@dataclass(frozen=True)
class Switch:
    """``/switch ROOM``: talk in another of the rooms the member is in."""

    room: str


@dataclass(frozen=True)
class Rooms:
    """``/rooms``: list the rooms and how many are in each."""


@dataclass(frozen=True)
class Who:
    """``/who [ROOM]``: list who is in a room (None: the current one)."""

    room: str | None = None


@dataclass(frozen=True)
class Online:
    """``/online`` (or ``/who *``): list everyone online, with their rooms."""


@dataclass(frozen=True)
class Ping:
    """``/ping [TOKEN]``: the server answers ``pong`` once every earlier line is acted on."""

    token: str = ""


@dataclass(frozen=True)
class Msg:
    """``/msg NAME TEXT``: a private message to one member."""

    nick: str
    text: str


@dataclass(frozen=True)
class Login:
    """``/login NAME PASSWORD``: take the registered nickname NAME."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Help:
    """``/help``: list the commands."""


@dataclass(frozen=True)
class Quit:
    """``/quit [MESSAGE]``: leave the chat, with an optional parting message."""

    text: str = ""


@dataclass(frozen=True)
class Format:
    """``/format NAME``: receive events rendered as NAME (``text`` or ``json``)."""

    name: str


@dataclass(frozen=True)
class Offer:
    """``/offer NICK SIZE NAME``: offer NICK a file (its bytes go through the drop box)."""

    nick: str
    size: int
    name: str


@dataclass(frozen=True)
class Offered:
    """``/offered ID``: the file of offer ID is uploaded; tell its recipient."""

    id: str


@dataclass(frozen=True)
class Accept:
    """``/accept [ID]``: take offer ID (None: the latest offered to the member)."""

    id: str | None = None


@dataclass(frozen=True)
class Decline:
    """``/decline [ID]``: refuse offer ID (None: the latest offered to the member)."""

    id: str | None = None


@dataclass(frozen=True)
class Received:
    """``/received ID``: the member has fetched offer ID's file; it may be deleted."""

    id: str


@dataclass(frozen=True)
class Invalid:
    """A line that looks like a command but is not a valid one; ``reason`` says why.

    ``code`` is ``usage`` (a known command with missing or extra words) or
    ``unknown-command``.
    """

    reason: str
    code: str = "usage"


Command = (
    Say
    | Act
    | Nick
    | Join
    | Leave
    | Switch
    | Rooms
    | Who
    | Online
    | Msg
    | Help
    | Quit
    | Format
    | Ping
    | Login
    | Offer
    | Offered
    | Accept
    | Decline
    | Received
    | Invalid
)

#: The commands with their usage and what they do, in the order ``/help`` lists them.
COMMAND_HELP: tuple[tuple[str, str], ...] = (
    ("/nick NAME", "choose or change your nickname"),
    ("/join ROOM", "also be in ROOM (created if new) and talk there"),
    ("/switch ROOM", "talk in ROOM, one of the rooms you are in"),
    ("/leave [ROOM]", "leave ROOM, or the room you talk in (also /part)"),
    ("/rooms", "list the rooms and how many are in each (also /list)"),
    ("/who [ROOM]", "list who is in your room, or ROOM (also /names)"),
    ("/online", "list everyone online and their rooms (also /who *)"),
    ("/msg NAME TEXT", "send TEXT to NAME only"),
    ("/me ACTION", "tell the room what you are doing"),
    ("/help", "this list"),
    ("/quit [MESSAGE]", "leave the chat (also /exit)"),
    ("/format text|json", "receive lines as text (the default) or as JSON, for programs"),
    ("/ping [TOKEN]", "the server answers pong TOKEN once it has acted on your earlier lines"),
)

#: ``/login``'s usage, which ``/help`` lists on a chat with accounts.
LOGIN_HELP = ("/login NAME PASSWORD", "take the registered nickname NAME")

#: The commands for files between members, which ``/help`` lists on a chat with a drop box.
OFFER_HELP: tuple[tuple[str, str], ...] = (
    ("/accept [ID]", "fetch the file offered to you (the latest, or offer ID)"),
    ("/decline [ID]", "refuse the file offered to you (the latest, or offer ID)"),
    ("/offer NAME SIZE FILE", "offer NAME a file (socketeer chat: /send NAME PATH)"),
    ("/offered ID", "the file of offer ID is uploaded: offer it"),
    ("/received ID", "you have the file of offer ID: delete it from the drop box"),
)

_ALIASES = {"part": "leave", "list": "rooms", "names": "who", "exit": "quit"}


def _usage(name: str) -> Invalid:
    commands = (*COMMAND_HELP, LOGIN_HELP, *OFFER_HELP)
    usage = next(usage for usage, _ in commands if usage.split()[0] == f"/{name}")
    return Invalid(f"usage: {usage}")


def _one_word(name: str, rest: str) -> str | Invalid:
    words = rest.split()
    return words[0] if len(words) == 1 else _usage(name)


def parse_command(line: str) -> Command:
    """Parse one line a member typed (without its line ending)."""
    if not line.startswith("/"):
        return Say(line)
    if line.startswith("//"):
        return Say(line[1:])
    if line[1:2].isspace() or len(line) == 1:
        return Invalid(
            'a command follows the "/"; /help lists them (// sends a line with a "/")',
            "unknown-command",
        )
    words = line[1:].split(None, 1)
    name = _ALIASES.get(words[0].casefold(), words[0].casefold())
    rest = words[1].strip() if len(words) > 1 else ""
    if name in ("rooms", "online", "help"):
        if rest:
            return _usage(name)
        simple: dict[str, Command] = {"rooms": Rooms(), "online": Online(), "help": Help()}
        return simple[name]
    if name in ("leave", "who"):
        words = rest.split()
        if len(words) > 1:
            return _usage(name)
        room = words[0] if words else None
        if name == "leave":
            return Leave(room)
        return Online() if room == "*" else Who(room)
    if name == "switch":
        word = _one_word(name, rest)
        return word if isinstance(word, Invalid) else Switch(word)
    if name == "ping":
        return Ping(rest)
    if name == "nick":
        word = _one_word(name, rest)
        return word if isinstance(word, Invalid) else Nick(word)
    if name == "join":
        word = _one_word(name, rest)
        return word if isinstance(word, Invalid) else Join(word)
    if name == "me":
        return Act(rest) if rest else _usage(name)
    if name == "msg":
        words = rest.split(None, 1)
        return Msg(words[0], words[1].strip()) if len(words) == 2 else _usage(name)
    if name == "quit":
        return Quit(rest)
    if name == "login":
        words = rest.split(None, 1)
        return Login(words[0], words[1].strip()) if len(words) == 2 else _usage(name)
    if name in ("accept", "decline"):
        words = rest.split()
        if len(words) > 1:
            return _usage(name)
        which = words[0] if words else None
        return Accept(which) if name == "accept" else Decline(which)
    if name in ("offered", "received"):
        word = _one_word(name, rest)
        if isinstance(word, Invalid):
            return word
        return Offered(word) if name == "offered" else Received(word)
    if name == "offer":
        words = rest.split(None, 2)
        if len(words) != 3 or not words[1].isascii() or not words[1].isdigit():
            return _usage(name)
        return Offer(words[0], int(words[1]), words[2].strip())
    if name == "format":
        word = _one_word(name, rest)
        return word if isinstance(word, Invalid) else Format(word.casefold())
    return Invalid(f'unknown command "/{name}"; /help lists the commands', "unknown-command")
