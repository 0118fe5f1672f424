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

Given a :class:`~.network.ChatNetwork`, the chat is one node of a chat
served by several processes: what happens in its rooms is published to the
other nodes, what they publish is given to :meth:`ChatProtocol.remote`, and
what only they can answer (is a nickname free, who is online, where is a
member) is asked: :meth:`ChatProtocol.take_asks` hands the questions to the
I/O layer, which gives the answers back with :meth:`ChatProtocol.answered`;
the member's further lines wait meanwhile.  Offered files cross nodes too:
notices about an offer for a member of another node go to the network
(:meth:`~.network.ChatNetwork.tell`), and a recipient's answer goes to the
node that holds the offer (an :class:`~.network.OfferAnswer`, asked like the
rest); what other nodes tell and answer comes in through :meth:`ChatProtocol.told`
and :meth:`ChatProtocol.forwarded`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ...ratelimit import TokenBucket
from ...visible import visible
from .commands import (
    COMMAND_HELP,
    LOGIN_HELP,
    OFFER_HELP,
    Accept,
    Act,
    Decline,
    Format,
    Help,
    Invalid,
    Join,
    Leave,
    Login,
    Msg,
    Nick,
    Offer,
    Offered,
    Online,
    Ping,
    Quit,
    Received,
    Rooms,
    Say,
    Switch,
    Who,
    parse_command,
)
from .events import Acted, History, Joined, Left, Notice, Private, Renamed, Said
from .history import Line, RecentLines
from .incoming import LineSplitter, Overlong
from .lines import NOWHERE
from .logins import LoginCheck, Registry, pass_line
from .names import name_key, nick_problem, room_name
from .network import ChatNetwork, OfferAnswer, RoomEvent, Roster, offer_node
from .rendering import FORMATS, TEXT, Addressed, Audience, Delivery, group
from .room import Member, Room
from .state import DEFAULT_HISTORY_BYTES, ChatState

if TYPE_CHECKING:  # offers.py needs the accounts, which need the chat's names
    from .offers import Note, OfferDesk

__all__ = ["Addressed", "Ask", "ChatProtocol", "ChatSettings", "Delivery"]

P = TypeVar("P")

WELCOME = (
    "welcome to socketeer chat! choose a nickname: type it, or /nick NAME"
    " (/help lists the commands)"
)
#: How many names "you joined" lists before saying how many more there are.
JOIN_NAMES = 20
#: Offers a member keeps track of (to settle the latest with ``/accept``); older ones are
#: forgotten here, not on the node holding them.
OFFERS_SEEN = 100
#: Notices that settle an offer for its recipient.
_SETTLED = frozenset({"offer-declined", "offer-received", "offer-expired", "no-offer"})
#: How many of a member's rooms ``/online`` lists before saying how many more there are.
ONLINE_ROOMS = 10
#: How much of a name that is not one an error quotes.
QUOTED_NAME = 64


@dataclass(frozen=True)
class Ask(Generic[P]):
    """A question ``member``'s ``command`` puts to the other nodes of the chat.

    The answer (:meth:`ChatProtocol.answered`): for :class:`Nick`, whether
    the nickname could be claimed; for :class:`Join` (the member joined the
    room), :class:`Who`, :class:`Online` and :class:`Rooms`, the
    :data:`~.network.Roster` of the other nodes; for
    :class:`Msg`, the private message as delivered, or None; for
    :class:`Offer`, the recipient's nickname on another node, or None; for an
    :class:`~.network.OfferAnswer`, True (on its way), False (the node holding
    the offer is gone) or None (out of reach).
    """

    member: Member[P]
    command: Nick | Join | Who | Online | Rooms | Msg | Offer | OfferAnswer


def _to(member: Member[P]) -> Audience[P]:
    """``member`` alone, as an audience."""
    return ((member.form, (member.peer,)),)


@dataclass(frozen=True)
class ChatSettings:
    """The chat's rules.

    ``default_room`` is where members land after choosing a nickname.
    ``history`` is how many lines a joining member is shown, and
    ``history_bytes`` how many bytes of them at most.  ``rate`` lines a
    second (0: no limit) with bursts of ``burst`` is how fast a member may
    send.  A line over ``max_line_length`` bytes is refused.  At most
    ``max_rooms`` rooms exist at once, members from one address may not
    create a room while ``max_rooms_per_address`` rooms have only them in it,
    and a member is in at most ``max_rooms_per_member`` rooms at once.
    """

    default_room: str = "lobby"
    history: int = 50
    history_bytes: int = DEFAULT_HISTORY_BYTES
    rate: float = 5.0
    burst: int = 10
    max_line_length: int = 4096
    max_rooms: int = 1000
    max_rooms_per_address: int = 10
    max_rooms_per_member: int = 100

    def __post_init__(self) -> None:
        problem = room_name(self.default_room)[1]
        if problem:
            raise ValueError(f"default room {self.default_room!r}: {problem}")
        for name in ("history", "history_bytes", "rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in (
            "burst",
            "max_line_length",
            "max_rooms",
            "max_rooms_per_address",
            "max_rooms_per_member",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class ChatProtocol(Generic[P]):
    """Every member and room of one chat; each method returns the events it causes.

    ``state`` keeps what lasts beyond connections (:mod:`.state`): each line
    said is appended to it, and a room coming into use takes its history
    from it.  When the state does not have a room's history at hand, the
    room is ``loading``: :meth:`take_loads` hands it to the I/O layer, which
    fetches the history and gives it back with :meth:`history_loaded`.
    Without a state, a room's history lasts while the room exists.

    With a ``registry`` (accounts), registered nicknames need their password.
    """

    def __init__(
        self,
        settings: ChatSettings | None = None,
        state: ChatState | None = None,
        registry: Registry | None = None,
        network: ChatNetwork | None = None,
        offers: OfferDesk | None = None,
    ) -> None:
        #: Registered nicknames (a users file), or None: every nickname is free.
        self.registry = registry
        #: Files offered between members (None: the chat has no drop box).
        self.offers = offers
        self._kept: list[tuple[str, Private]] = []
        self._inboxes: list[Member[P]] = []
        self._checks: list[LoginCheck[P]] = []
        self.settings = settings = settings or ChatSettings()
        #: What keeps the rooms' histories (None: each room's lasts while the room does).
        self.state = state
        #: The other nodes of the chat (None: this process is the whole chat).
        self.network = network
        #: Questions for the other nodes, for the I/O layer to put.
        self._asks: list[Ask[P]] = []
        #: Every room, by the key of its name (see :func:`.names.name_key`).
        self._rooms: dict[str, Room[P]] = {}
        self._members: dict[str, Member[P]] = {}
        #: Rooms whose history the I/O layer is to fetch.
        self._loads: list[Room[P]] = []
        #: How many rooms have only members from one address in them, by address.
        self._held: dict[str, int] = {}
        self._default_room = self._new_room(room_name(settings.default_room)[0]).key

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
        """``member`` sent ``data``: act on every line it completes.

        After a line that joins a room whose history is on its way, the
        member's further lines are held (:attr:`Member.held`) until it
        arrives, so that what it sees comes in the order it asked; the I/O
        layer stops reading from it meanwhile.
        """
        out: list[Addressed[P]] = []
        self._act_on(member, member.splitter.feed(data), now, wall, out)
        return out

    def _act_on(
        self,
        member: Member[P],
        lines: list[str | Overlong],
        now: float,
        wall: float,
        out: list[Addressed[P]],
    ) -> None:
        for number, line in enumerate(lines):
            if member.gone:
                return
            if member.held is not None:
                member.held += lines[number:]
                return
            self._line(member, line, now, wall, out)
        if member.held is None and member.input_ended and not member.gone:
            out += self.disconnect(member, wall)

    def end_of_input(self, member: Member[P], now: float, wall: float) -> list[Addressed[P]]:
        """``member`` will send nothing more: act on a last unfinished line, then let it go."""
        out: list[Addressed[P]] = []
        member.input_ended = True
        self._act_on(member, member.splitter.end(), now, wall, out)
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
        member.checking = False
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
        self._resume(member, now, wall, out)
        return out

    def _resume(self, member: Member[P], now: float, wall: float, out: list[Addressed[P]]) -> None:
        """Act on ``member``'s held lines once nothing it waits for is on its way."""
        if member.loading or member.checking or member.asking or member.held is None:
            return
        held, member.held = member.held, None
        self._act_on(member, held, now, wall, out)

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

    # history from the chat's state ---------------------------------------------------

    def take_loads(self) -> list[Room[P]]:
        """The rooms whose history is to be fetched from the state (each handed out once)."""
        loads, self._loads = self._loads, []
        return loads

    def history_loaded(
        self, room: Room[P], past: list[Line], now: float, wall: float
    ) -> list[Addressed[P]]:
        """``room``'s history arrived: show it to those who joined while it was on its way.

        Then act on the lines they sent meanwhile (see :meth:`receive`).
        """
        out: list[Addressed[P]] = []
        if not room.loading:
            return out
        room.loading = False
        said_meanwhile = list(room.history)
        settings = self.settings
        room.history = RecentLines(settings.history, settings.history_bytes)
        for line in past:
            room.history.append(line if line.room == room.name else _moved(line, room.name))
        for line in said_meanwhile:
            room.history.append(line)
        waiting, room.waiting = room.waiting, []
        for member, joined in waiting:
            if room.members.get(name_key(member.nick or "")) is member:
                self._welcome_in(member, room, joined, out)
            member.loading -= 1
            self._resume(member, now, wall, out)
        return out

    # the other nodes ------------------------------------------------------------------

    def take_asks(self) -> list[Ask[P]]:
        """The questions for the other nodes (each handed out once)."""
        asks, self._asks = self._asks, []
        return asks

    def _ask(
        self,
        member: Member[P],
        command: Nick | Join | Who | Online | Rooms | Msg | Offer | OfferAnswer,
    ) -> None:
        """Put ``command`` to the other nodes; hold ``member``'s lines until the answer."""
        member.asking = True
        if member.held is None:
            member.held = []
        self._asks.append(Ask(member, command))

    def answered(
        self, ask: Ask[P], answer: bool | Roster | Private | str | None, now: float, wall: float
    ) -> list[Addressed[P]]:
        """The other nodes answered ``ask``: finish its command, then act on the held lines."""
        out: list[Addressed[P]] = []
        member = ask.member
        member.asking = False
        roster = answer if isinstance(answer, list) else []  # None: out of reach
        match ask.command:
            case Nick(nick):
                if member.gone:
                    if answer is True and self.network is not None:
                        self.network.released(nick)
                elif answer is True:
                    self._name(member, nick, wall, out, claimed=True)
                else:
                    self._taken(member, nick, None, wall, out)
            case Join(name):
                room = member.rooms.get(name_key(name))
                if room is not None and not member.gone:
                    key = room.key
                    elsewhere = [nick for nick, names in roster if key in map(name_key, names)]
                    self._welcome(member, room, elsewhere, wall, out)
            case Who(room):
                self._who(member, room, wall, out, roster)
            case Online():
                self._online(member, wall, out, roster)
            case Rooms():
                self._list_rooms(member, wall, out, roster)
            case Msg(nick) if not member.gone:
                if isinstance(answer, Private):
                    out.append((_to(member), answer))
                else:
                    self._no_such_nick(member, nick, wall, out)
            case Offer(nick, size, name) if not member.gone:
                if isinstance(answer, str):
                    self._make_offer(member, answer, size, name, now, wall, out)
                else:
                    self._not_online(member, nick, wall, out)
            case OfferAnswer(offer_id=offer_id) if not member.gone:
                if answer is False:
                    self._offer_gone(member, offer_id, wall, out)
                elif answer is None:
                    text = f"the server holding offer {offer_id} is out of reach; try again later"
                    self._error(member, wall, "offer-unreachable", text, out, id=offer_id)
        if not member.gone:
            self._resume(member, now, wall, out)
        return out

    def remote(self, room: str, event: RoomEvent) -> list[Addressed[P]]:
        """``event`` happened in the room keyed ``room`` on another node: tell the members here."""
        found = self._rooms.get(room)
        if found is None:
            return []
        if isinstance(event, Said | Acted):
            found.history.append(event if event.room == found.name else _moved(event, found.name))
        return [(found.audience(), event)] if found.members else []

    def private(self, message: Private) -> list[Addressed[P]]:
        """A member of another node sent ``message`` to a member here."""
        target = self._members.get(name_key(message.recipient))
        return [(_to(target), message)] if target is not None else []

    def announce(self, code: str, text: str, wall: float) -> list[Addressed[P]]:
        """Tell every member with a nickname ``text`` (a notice with ``code``)."""
        members = list(self._members.values())
        return [(group(members), Notice(wall, NOWHERE, code, text))] if members else []

    def nick_lost(self, nick: str, new: str, wall: float) -> list[Addressed[P]]:
        """``nick`` is held on another node: its member here is renamed ``new`` and told why."""
        member = self._members.get(name_key(nick))
        out: list[Addressed[P]] = []
        if member is None or member.nick is None or self._members.get(name_key(new)):
            return out
        old = member.nick
        text = (
            f'"{old}" was taken on another server while the chat was cut off;'
            f" you are now known as {new}"
        )
        data = {"nick": new, "lost": old}
        out.append((_to(member), Notice(wall, NOWHERE, "nick-lost", text, data, error=True)))
        self._rename(member, new, wall, out)
        return out

    def _publish(self, room: Room[P], event: RoomEvent) -> None:
        if self.network is not None:
            self.network.publish(room.key, event)

    def _present(self, member: Member[P]) -> None:
        """Tell the other nodes which rooms ``member`` is in now."""
        if self.network is not None and member.nick is not None and not member.gone:
            self.network.present(member.nick, [room.name for room in member.rooms.values()])

    # offline messages and offered files -----------------------------------------------

    def take_kept(self) -> list[tuple[str, Private]]:
        """Messages to keep for offline members (by nickname key), since the last call."""
        kept, self._kept = self._kept, []
        return kept

    def take_inboxes(self) -> list[Member[P]]:
        """Members who logged in since the last call: fetch their kept messages."""
        inboxes, self._inboxes = self._inboxes, []
        return inboxes

    def inbox_taken(
        self, member: Member[P], messages: list[Private], wall: float
    ) -> list[Addressed[P]]:
        """``member``'s kept messages arrived: show them, after how many there are."""
        if member.gone or not messages:
            return []
        count = len(messages)
        text = f"{count} message{'' if count == 1 else 's'} came while you were away:"
        me = _to(member)
        notice = Notice(wall, NOWHERE, "kept-messages", text, {"count": count})
        out: list[Addressed[P]] = [(me, notice)]
        out += [(me, message) for message in messages]
        return out

    def tell(self, notes: list[Note]) -> list[Addressed[P]]:
        """Notices for nickname keys, to those of them who are online here; the others'
        go to the network, for the node where they are online."""
        out: list[Addressed[P]] = []
        here = self.network.node if self.network is not None else ""
        for key, notice in notes:
            member = self._members.get(key)
            if member is not None:
                self._note_to(member, notice, here, out)
            elif self.network is not None:
                self.network.tell(key, notice)
        return out

    def told(self, node: str, key: str, notice: Notice) -> list[Addressed[P]]:
        """``node`` tells the member here whose nickname has ``key`` ``notice``."""
        out: list[Addressed[P]] = []
        member = self._members.get(key)
        if member is not None:
            self._note_to(member, notice, node, out)
        return out

    def forwarded(self, answer: OfferAnswer, wall: float) -> list[Addressed[P]]:
        """A member of another node answers an offer held here: as if it were here."""
        if self.offers is None:
            return []
        return self.tell(self._settle(self.offers, answer.verb, answer.key, answer.offer_id, wall))

    def node_gone(self, node: str, wall: float) -> list[Addressed[P]]:
        """``node`` is gone: the offers it held expire for the members here."""
        out: list[Addressed[P]] = []
        for member in self._members.values():
            for offer_id, (held_on, _) in list(member.offers.items()):
                if held_on == node:
                    self._offer_gone(member, offer_id, wall, out)
        return out

    @staticmethod
    def _note_to(member: Member[P], notice: Notice, node: str, out: list[Addressed[P]]) -> None:
        """Tell ``member`` ``notice`` (from ``node``); keep track of the offers it is told of."""
        offer_id = notice.data.get("id")
        if isinstance(offer_id, str):
            offers = member.offers
            if notice.code == "offer":
                offers[offer_id] = (node, notice)
                if len(offers) > OFFERS_SEEN:
                    del offers[next(iter(offers))]
            elif notice.code in _SETTLED:
                offers.pop(offer_id, None)
        out.append((_to(member), notice))

    def _offer_gone(
        self, member: Member[P], offer_id: str, wall: float, out: list[Addressed[P]]
    ) -> None:
        """The node holding ``offer_id`` is gone: the offer has expired for ``member``."""
        seen = member.offers.pop(offer_id, None)
        if seen is None:
            self._no_offer(member, offer_id, wall, out)
            return
        facts = seen[1].data
        name, sender = visible(str(facts.get("name", ""))), str(facts.get("from", ""))
        text = f"offer {offer_id}: {name} from {sender} expired (the server it was on is gone)"
        expired = Notice(wall, NOWHERE, "offer-expired", text, {"id": offer_id})
        out.append((_to(member), expired))

    def _offer(
        self,
        member: Member[P],
        command: Offer | Offered | Accept | Decline | Received,
        now: float,
        wall: float,
        out: list[Addressed[P]],
    ) -> None:
        if not self._named(member, wall, out):
            return
        assert member.nick is not None
        if isinstance(command, Accept | Decline | Received):
            self._answer_offer(member, command, wall, out)
            return
        desk = self.offers
        if desk is None:
            self._no_files(member, wall, out)
            return
        match command:
            case Offer(nick, size, name):
                target = self._members.get(name_key(nick))
                if target is not None and target.nick is not None:
                    self._make_offer(member, target.nick, size, name, now, wall, out)
                elif self.network is not None:
                    self._ask(member, command)  # on another node?
                else:
                    self._not_online(member, nick, wall, out)
            case Offered(offer_id):
                out += self.tell(desk.offered(name_key(member.nick), offer_id, wall))

    def _answer_offer(
        self,
        member: Member[P],
        command: Accept | Decline | Received,
        wall: float,
        out: list[Addressed[P]],
    ) -> None:
        """``/accept``, ``/decline``, ``/received``: settled here if the offer is held here,
        else passed to the node holding it."""
        assert member.nick is not None
        key = name_key(member.nick)
        verb: Literal["accept", "decline", "received"] = (
            "accept"
            if isinstance(command, Accept)
            else "decline"
            if isinstance(command, Decline)
            else "received"
        )
        offer_id = command.id
        if offer_id is None and member.offers:
            offer_id = next(reversed(member.offers))  # the latest it was told of
        network = self.network
        node = offer_node(offer_id or "")
        if network is not None and offer_id is not None and node not in ("", network.node):
            self._ask(member, OfferAnswer(node, key, verb, offer_id))
        elif self.offers is not None:
            out += self.tell(self._settle(self.offers, verb, key, offer_id, wall))
        elif network is not None:  # no drop box here, but offers may come from other nodes
            self._no_offer(member, offer_id, wall, out)
        else:
            self._no_files(member, wall, out)

    def _no_files(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> None:
        reply = "this chat has no drop box for files (serve chat --files ENDPOINT)"
        self._error(member, wall, "no-files", reply, out)

    @staticmethod
    def _settle(
        desk: OfferDesk,
        verb: Literal["accept", "decline", "received"],
        key: str,
        offer_id: str | None,
        wall: float,
    ) -> list[Note]:
        """The member whose nickname has ``key`` answers ``verb`` to ``offer_id`` (None:
        the latest offered to it)."""
        if verb == "accept":
            return desk.accept(key, offer_id, wall)
        if verb == "decline":
            return desk.decline(key, offer_id, wall)
        return desk.received(key, offer_id or "", wall)

    def _make_offer(
        self,
        member: Member[P],
        recipient: str,
        size: int,
        name: str,
        now: float,
        wall: float,
        out: list[Addressed[P]],
    ) -> None:
        """``member`` offers ``recipient`` (online here or on another node) a file."""
        assert member.nick is not None
        assert self.offers is not None
        notes = self.offers.offer(
            member.nick,
            name_key(member.nick),
            recipient,
            name_key(recipient),
            size,
            name,
            now,
            wall,
        )
        out += self.tell(notes)

    def _no_offer(
        self, member: Member[P], offer_id: str | None, wall: float, out: list[Addressed[P]]
    ) -> None:
        if offer_id is None:
            self._error(member, wall, "no-offer", "there is no offer for you", out)
            return
        shown = visible(offer_id[:24])
        self._error(member, wall, "no-offer", f"there is no offer {shown} for you", out, id=shown)

    def _not_online(
        self, member: Member[P], nick: str, wall: float, out: list[Addressed[P]]
    ) -> None:
        shown = visible(nick)
        reply = f'no one called "{shown}" is online; files go to members who are online'
        self._error(member, wall, "not-online", reply, out, nick=shown)

    def _new_room(self, name: str) -> Room[P]:
        """Make the room called ``name``, with its history from the state."""
        settings = self.settings
        history = RecentLines(settings.history, settings.history_bytes)
        room = Room[P](name, history)
        self._rooms[room.key] = room
        if self.network is not None:
            self.network.opened(room.key)
        state = self.state
        if state is not None:
            past = state.cached(room.key)
            if past is None:
                room.loading = True
                self._loads.append(room)
            else:
                for line in past:
                    history.append(line if line.room == name else _moved(line, name))
        return room

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
        if member.held is not None:  # a password or a history is on its way: wait for it
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
            case Leave(room):
                self._leave(member, room, wall, out)
            case Switch(room):
                self._switch(member, room, wall, out)
            case Rooms():
                self._list_rooms(member, wall, out, None)
            case Who(room):
                self._who(member, room, wall, out, None)
            case Online():
                self._online(member, wall, out, None)
            case Ping(token):
                text = f"pong {token}".rstrip()
                out.append((_to(member), Notice(wall, NOWHERE, "pong", text, {"token": token})))
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
            case Offer() | Offered() | Accept() | Decline() | Received():
                self._offer(member, command, now, wall, out)
            case Invalid(reason, code):
                self._error(member, wall, code, reason, out)

    # messages -----------------------------------------------------------------------

    def _say(self, member: Member[P], text: str, wall: float, out: list[Addressed[P]]) -> None:
        room = member.room
        if room is None:
            self._error(member, wall, "no-room", "you are in no room; /join ROOM to join one", out)
            return
        assert member.nick is not None
        self._record(room, Said(wall, room.name, member.nick, visible(text)), out)

    def _act(self, member: Member[P], text: str, wall: float, out: list[Addressed[P]]) -> None:
        if not self._named(member, wall, out):
            return
        room = member.room
        if room is None:
            self._error(member, wall, "no-room", "you are in no room; /join ROOM to join one", out)
            return
        assert member.nick is not None
        self._record(room, Acted(wall, room.name, member.nick, visible(text)), out)

    def _record(self, room: Room[P], line: Line, out: list[Addressed[P]]) -> None:
        """``line`` was said in ``room``: keep it in the history, and tell the room."""
        room.history.append(line)
        if self.state is not None:
            self.state.append(room.key, line)
        self._publish(room, line)
        out.append((room.audience(), line))

    def _msg(
        self, member: Member[P], nick: str, text: str, wall: float, out: list[Addressed[P]]
    ) -> None:
        if not self._named(member, wall, out):
            return
        target = self._members.get(name_key(nick))
        account = self.registry.accounts.find(nick) if self.registry is not None else None
        if target is None and account is not None and self.state is not None:
            assert member.nick is not None
            kept = Private(wall, member.nick, account.name, visible(text))
            self._kept.append((name_key(account.name), kept))
            reply = f"{account.name} is offline; the message is kept for when they log in"
            data = {"nick": account.name}
            out.append((_to(member), kept))
            out.append((_to(member), Notice(wall, NOWHERE, "kept", reply, data)))
            return
        if target is None:
            if self.network is not None:
                self._ask(member, Msg(nick, text))
            else:
                self._no_such_nick(member, nick, wall, out)
            return
        assert member.nick is not None
        assert target.nick is not None
        event = Private(wall, member.nick, target.nick, visible(text))
        out.append((_to(member) if target is member else group((target, member)), event))

    def _no_such_nick(
        self, member: Member[P], nick: str, wall: float, out: list[Addressed[P]]
    ) -> None:
        shown = visible(nick)
        reply = f'no one is called "{shown}"'
        self._error(member, wall, "no-such-nick", reply, out, nick=shown)

    # names and rooms ----------------------------------------------------------------

    def _name(
        self,
        member: Member[P],
        nick: str,
        wall: float,
        out: list[Addressed[P]],
        claimed: bool = False,
    ) -> None:
        """Give ``member`` the nickname ``nick`` if it may have it.

        On a node of a larger chat the nickname is first claimed from the
        other nodes (``claimed``: it was).
        """
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
            self._taken(member, nick, holder.nick, wall, out)
            return
        network = self.network
        if network is not None and not claimed and (old is None or name_key(old) != key):
            self._ask(member, Nick(nick))
            return
        member.nick = nick
        if old is not None:
            if name_key(old) != key:
                member.offers.clear()  # offers are between nicknames
            del self._members[name_key(old)]
            if network is not None and name_key(old) != key:
                network.released(old)
        self._members[key] = member
        text = f"you are now known as {nick}"
        settings = self.settings
        data = {"nick": nick, "rate": settings.rate, "burst": settings.burst}
        out.append((_to(member), Notice(wall, NOWHERE, "nick", text, data)))
        if member.account is not None and name_key(member.account) == key and self.state:
            self._inboxes.append(member)
        if old is None:
            landing = member.landing
            member.landing = None
            if landing is None:
                self._enter(member, self._rooms[self._default_room], wall, out)
            for name in landing or ():
                self._join(member, name, wall, out)
            return
        self._renamed(member, old, wall, out)

    def _taken(
        self, member: Member[P], nick: str, holder: str | None, wall: float, out: list[Addressed[P]]
    ) -> None:
        """Tell ``member`` that ``nick`` is taken (by ``holder``, when it is known here)."""
        same = holder is None or holder.casefold() == nick.casefold()
        alike = "" if same else f' (it looks like "{holder}")'
        reply = f'the nickname "{nick}" is taken{alike}; choose another'
        self._error(member, wall, "nick-taken", reply, out, nick=nick, holder=holder or nick)

    def _rename(self, member: Member[P], nick: str, wall: float, out: list[Addressed[P]]) -> None:
        """Call ``member`` (who has a nickname) ``nick``, with no questions asked."""
        old = member.nick
        assert old is not None
        member.nick = nick
        member.offers.clear()
        del self._members[name_key(old)]
        self._members[name_key(nick)] = member
        if self.network is not None:
            self.network.released(old)
        self._renamed(member, old, wall, out)

    def _renamed(self, member: Member[P], old: str, wall: float, out: list[Addressed[P]]) -> None:
        """``member`` was called ``old``: tell the rooms it is in."""
        assert member.nick is not None
        for room in member.rooms.values():
            room.rename(member, old)
            renamed = Renamed(wall, room.name, old, member.nick)
            self._publish(room, renamed)
            others = room.others(member)
            if others:
                out.append((others, renamed))
        self._present(member)

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
        member.checking = True
        if member.held is None:
            member.held = []
        self._checks.append(LoginCheck(member.peer, name, password))

    def _join(self, member: Member[P], typed: str, wall: float, out: list[Addressed[P]]) -> None:
        name = self._room_name(member, typed, wall, out)
        if name is None:
            return
        key = name_key(name)
        if member.nick is None:
            self._land(member, name, wall, out)
            return
        room = member.rooms.get(key)
        if room is not None:
            self._talk_in(member, room, wall, out)
            return
        limit = self.settings.max_rooms_per_member
        if len(member.rooms) >= limit:
            reply = f"you are in {limit} rooms already; /leave one first"
            self._error(member, wall, "too-many-joined", reply, out, limit=limit)
            return
        room = self._rooms.get(key)
        if room is None:
            refusal = self._no_new_room(member)
            if refusal:
                code, reply, limit = refusal
                self._error(member, wall, code, reply, out, limit=limit)
                return
            room = self._new_room(name)
        self._enter(member, room, wall, out)

    def _room_name(
        self, member: Member[P], typed: str, wall: float, out: list[Addressed[P]]
    ) -> str | None:
        """The room ``typed`` names, or None after telling ``member`` why it names none."""
        name, problem = room_name(typed)
        if problem:
            shown = visible(typed[:QUOTED_NAME]) + ("..." if len(typed) > QUOTED_NAME else "")
            reply = f'"{shown}" cannot be a room: {problem}'
            self._error(member, wall, "room-invalid", reply, out, room=shown)
            return None
        return name

    def _land(
        self, member: Member[P], name: str | None, wall: float, out: list[Addressed[P]]
    ) -> None:
        """Before its nickname: ``member`` will join ``name`` (None: no room) once named."""
        landing = member.landing if member.landing is not None else []
        if name is None:
            landing = []
        elif name_key(name) not in map(name_key, landing):
            limit = self.settings.max_rooms_per_member
            if len(landing) >= limit:
                reply = f"you are in {limit} rooms already; /leave one first"
                self._error(member, wall, "too-many-joined", reply, out, limit=limit)
                return
            landing.append(name)
        member.landing = landing
        where = ", ".join(landing) if landing else "no room"
        text = f"once you have a nickname you will join {where}"
        out.append((_to(member), Notice(wall, NOWHERE, "landing", text, {"rooms": list(landing)})))

    def _no_new_room(self, member: Member[P]) -> tuple[str, str, int] | None:
        """Why ``member`` may not create a room now (code, text, limit), or None if it may."""
        settings = self.settings
        if len(self._rooms) >= settings.max_rooms:
            limit = settings.max_rooms
            return "too-many-rooms", f"there are {limit} rooms already; /rooms lists them", limit
        limit = settings.max_rooms_per_address
        if self._held.get(member.address, 0) >= limit:
            reply = (
                f"your address already has {limit} rooms to itself;"
                " join a room others are in, or leave one of yours"
            )
            return "too-many-rooms-per-address", reply, limit
        return None

    def _hold(self, room: Room[P], before: str | None) -> None:
        """Count the rooms each address has to itself: ``room`` was held by ``before``."""
        if room.key == self._default_room:
            return
        after = room.holder()
        if after == before:
            return
        held = self._held
        if before is not None:
            held[before] -= 1
            if not held[before]:
                del held[before]
        if after is not None:
            held[after] = held.get(after, 0) + 1

    def _enter(
        self, member: Member[P], room: Room[P], wall: float, out: list[Addressed[P]]
    ) -> None:
        assert member.nick is not None
        joined_room = Joined(wall, room.name, member.nick)
        self._publish(room, joined_room)
        if room.members:
            out.append((room.audience(), joined_room))
        before = room.holder()
        room.add(member)
        self._hold(room, before)
        member.room = room
        self._present(member)
        if self.network is not None:
            self._ask(member, Join(room.name))  # who is in it on the other nodes
        else:
            self._welcome(member, room, [], wall, out)

    def _welcome(
        self,
        member: Member[P],
        room: Room[P],
        elsewhere: list[str],
        wall: float,
        out: list[Addressed[P]],
    ) -> None:
        """Tell ``member`` it joined ``room`` (where ``elsewhere`` are on other nodes)."""
        nicks = sorted(room.nicks() + elsewhere, key=str.casefold)
        listed = ", ".join(nicks[:JOIN_NAMES])
        if len(nicks) > JOIN_NAMES:
            listed += f" and {len(nicks) - JOIN_NAMES} more (/who lists everyone)"
        text = f"you joined {room.name}; {len(nicks)} here: {listed}"
        data = {"room": room.name, "nicks": nicks, "count": len(nicks)}
        joined = Notice(wall, room.name, "joined", text, data)
        if room.loading:
            room.waiting.append((member, joined))
            member.loading += 1
            if member.held is None:
                member.held = []
        else:
            self._welcome_in(member, room, joined, out)

    @staticmethod
    def _welcome_in(
        member: Member[P], room: Room[P], joined: Notice, out: list[Addressed[P]]
    ) -> None:
        """Show ``member``, who joined ``room``, its history, then ``joined``."""
        me = _to(member)
        if room.history:
            out.append((me, History(room.name, tuple(room.history))))
        out.append((me, joined))

    def _talk_in(
        self, member: Member[P], room: Room[P], wall: float, out: list[Addressed[P]]
    ) -> None:
        member.room = room
        text = f"you now talk in {room.name}"
        out.append((_to(member), Notice(wall, room.name, "switched", text, {"room": room.name})))

    def _switch(self, member: Member[P], typed: str, wall: float, out: list[Addressed[P]]) -> None:
        if not self._named(member, wall, out):
            return
        name = self._room_name(member, typed, wall, out)
        if name is None:
            return
        room = member.rooms.get(name_key(name))
        if room is None:
            self._not_in(member, name, wall, out)
            return
        self._talk_in(member, room, wall, out)

    def _not_in(self, member: Member[P], name: str, wall: float, out: list[Addressed[P]]) -> None:
        reply = f"you are not in {name}; /join {name} to join it"
        self._error(member, wall, "not-in-room", reply, out, room=name)

    def _exit(self, member: Member[P], room: Room[P], left: Left, out: list[Addressed[P]]) -> None:
        before = room.holder()
        room.remove(member)
        self._hold(room, before)
        if member.room is room:
            member.room = next(reversed(member.rooms.values()), None)
        self._publish(room, left)
        self._present(member)
        if room.members:
            out.append((room.audience(), left))
        elif room.key != self._default_room:
            del self._rooms[room.key]
            if self.network is not None:
                self.network.closed(room.key)

    def _leave(
        self, member: Member[P], typed: str | None, wall: float, out: list[Addressed[P]]
    ) -> None:
        if member.nick is None:
            if typed is None:
                self._land(member, None, wall, out)
            else:
                self._named(member, wall, out)
            return
        if typed is None:
            room = member.room
            if room is None:
                self._error(member, wall, "no-room", "you are in no room", out)
                return
        else:
            name = self._room_name(member, typed, wall, out)
            if name is None:
                return
            room = member.rooms.get(name_key(name))
            if room is None:
                self._not_in(member, name, wall, out)
                return
        self._exit(member, room, Left(wall, room.name, member.nick, "left"), out)
        now_in = member.room
        if now_in is None:
            text = f"you left {room.name}; you are in no room now (/join ROOM to join one)"
        else:
            text = f"you left {room.name}; you talk in {now_in.name}"
        data = {"room": room.name, "current": now_in.name if now_in else None}
        out.append((_to(member), Notice(wall, room.name, "left", text, data)))

    def _depart(
        self, member: Member[P], wall: float, how: Literal["quit", "disconnected"], reason: str
    ) -> list[Addressed[P]]:
        out: list[Addressed[P]] = []
        member.gone = True
        if member.nick is not None:
            del self._members[name_key(member.nick)]
            if self.network is not None:
                self.network.released(member.nick)
            for room in list(member.rooms.values()):
                self._exit(member, room, Left(wall, room.name, member.nick, how, reason), out)
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
        for room in member.rooms.values():
            room.changed()
        text = f"lines are now sent as {form.name}"
        out.append((_to(member), Notice(wall, NOWHERE, "format", text, {"format": form.name})))

    # listings -----------------------------------------------------------------------

    def _list_rooms(
        self, member: Member[P], wall: float, out: list[Addressed[P]], roster: Roster | None
    ) -> None:
        if self.network is not None and roster is None:
            self._ask(member, Rooms())
            return
        names = {room.key: room.name for room in self._rooms.values()}
        counts = {room.key: len(room.members) for room in self._rooms.values()}
        for _, elsewhere in roster or ():
            for name in elsewhere:
                key = name_key(name)
                names.setdefault(key, name)
                counts[key] = counts.get(key, 0) + 1
        rooms = sorted((names[key], count) for key, count in counts.items())
        listed = ", ".join(f"{name} ({count})" for name, count in rooms)
        data = {"rooms": [{"room": name, "count": count} for name, count in rooms]}
        out.append((_to(member), Notice(wall, NOWHERE, "rooms", f"rooms: {listed}", data)))

    def _who(
        self,
        member: Member[P],
        typed: str | None,
        wall: float,
        out: list[Addressed[P]],
        roster: Roster | None,
    ) -> None:
        if not self._named(member, wall, out):
            return
        if self.network is not None and roster is None:
            self._ask(member, Who(typed))
            return
        if typed is None:
            room = member.room
            if room is None:
                reply = "you are in no room; /rooms lists them"
                self._error(member, wall, "no-room", reply, out)
                return
        else:
            name = self._room_name(member, typed, wall, out)
            if name is None:
                return
            key = name_key(name)
            found = self._rooms.get(key)
            elsewhere = any(key in map(name_key, names) for _, names in roster or ())
            if found is None and not elsewhere:
                reply = f"there is no room called {name}; /rooms lists them"
                self._error(member, wall, "no-such-room", reply, out, room=name)
                return
            room = found or Room[P](name, RecentLines(0, 0))
        nicks = room.nicks()
        for nick, names in roster or ():
            if room.key in map(name_key, names):
                nicks.append(nick)
        nicks.sort(key=str.casefold)
        text = f"{len(nicks)} in {room.name}: {', '.join(nicks)}"
        data = {"room": room.name, "nicks": nicks}
        out.append((_to(member), Notice(wall, room.name, "who", text, data)))

    def _online(
        self, member: Member[P], wall: float, out: list[Addressed[P]], roster: Roster | None
    ) -> None:
        if not self._named(member, wall, out):
            return
        if self.network is not None and roster is None:
            self._ask(member, Online())
            return
        here = [
            (someone.nick or "", [room.name for room in someone.rooms.values()])
            for someone in self._members.values()
        ]
        online = sorted(here + list(roster or ()), key=lambda entry: entry[0].casefold())
        listed = []
        members = []
        for nick, rooms in online:
            members.append({"nick": nick, "rooms": rooms[:ONLINE_ROOMS], "count": len(rooms)})
            shown = ", ".join(rooms[:ONLINE_ROOMS]) or "no room"
            if len(rooms) > ONLINE_ROOMS:
                shown += f" and {len(rooms) - ONLINE_ROOMS} more"
            listed.append(f"{nick} ({shown})")
        text = f"{len(online)} online: {', '.join(listed)}"
        data = {"members": members, "count": len(online)}
        out.append((_to(member), Notice(wall, NOWHERE, "online", text, data)))

    def _help(self, member: Member[P], wall: float, out: list[Addressed[P]]) -> None:
        listed = (*COMMAND_HELP, LOGIN_HELP) if self.registry is not None else COMMAND_HELP
        listed += OFFER_HELP if self.offers is not None else ()
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


def _moved(line: Line, room: str) -> Line:
    """``line`` as said in ``room`` (a room whose name was first written another way)."""
    return (
        Said(line.time, room, line.nick, line.text)
        if isinstance(line, Said)
        else Acted(line.time, room, line.nick, line.text)
    )
