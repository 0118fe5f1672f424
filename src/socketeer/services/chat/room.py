"""Members and the rooms they talk in.

``P`` is whatever the I/O layer uses to reach a member (its session); the
chat never looks inside it, it only names it in deliveries.
"""

from __future__ import annotations

from collections import Counter
from typing import Generic, TypeVar

from ...ratelimit import TokenBucket
from .events import Notice
from .history import RecentLines
from .incoming import LineSplitter, Overlong
from .names import name_key
from .rendering import TEXT, Audience, Form, group

__all__ = ["Member", "Room"]

P = TypeVar("P")


class Member(Generic[P]):
    """One connection to the chat: who it is, where it is, how fast it may talk."""

    __slots__ = (
        "account",
        "account",
        "address",
        "asking",
        "bucket",
        "checking",
        "finished",
        "form",
        "gone",
        "held",
        "input_ended",
        "landing",
        "loading",
        "nick",
        "offers",
        "password",
        "peer",
        "room",
        "rooms",
        "splitter",
        "throttled",
    )

    def __init__(
        self, peer: P, splitter: LineSplitter, bucket: TokenBucket, address: str = ""
    ) -> None:
        self.peer = peer
        #: Where the member connects from, as per-address limits count it.
        self.address = address
        #: How the member's events are rendered (``/format``).
        self.form: Form = TEXT
        self.splitter = splitter
        self.bucket = bucket
        #: None until the member has chosen a nickname.
        self.nick: str | None = None
        #: Every room the member is in, by key, in the order it joined them.
        self.rooms: dict[str, Room[P]] = {}
        #: The room plain lines go to (one of ``rooms``), or None.
        self.room: Room[P] | None = None
        #: Rooms asked for before the nickname (``/join``, ``/leave``), entered once
        #: named instead of the default room; None: the default room.
        self.landing: list[str] | None = None
        #: Told that lines are being dropped, and has not slowed down since.
        self.throttled = False
        #: The member asked to leave (/quit): close once its deliveries are written.
        self.finished = False
        #: No longer in the chat.
        self.gone = False
        #: Lines received while a room it joined had its history on the way, or while
        #: its password was being checked, not yet acted on; None when lines are
        #: acted on as they come.
        self.held: list[str | Overlong] | None = None
        #: How many rooms it joined have their history on the way.
        self.loading = 0
        #: A question to the other nodes of the chat is on its way (see :mod:`.network`).
        self.asking = False
        #: Its input ended (acted on once the held lines are).
        self.input_ended = False
        #: Its password is being checked (its lines wait in :attr:`held`).
        self.checking = False
        #: The account the member logged in to (its name), if any.
        self.account: str | None = None
        #: A ``PASS`` line's password, for the nickname still to come.
        self.password: str | None = None
        #: The offers of files it was told of and has not settled, oldest first: each
        #: offer's id, the node holding it ("" or this node: here) and the notice.
        self.offers: dict[str, tuple[str, Notice]] = {}

    def __repr__(self) -> str:
        return f"<Member {self.nick or '(no nickname)'} in {self.room.name if self.room else '-'}>"


class Room(Generic[P]):
    """A named room: its members, where they come from, and its recent lines.

    While ``loading``, the room's history is on its way from the chat's state;
    members who join meanwhile wait in ``waiting`` with the notice they will
    be given after it.
    """

    __slots__ = (
        "_addresses",
        "_audience",
        "history",
        "key",
        "loading",
        "members",
        "name",
        "waiting",
    )

    def __init__(self, name: str, history: RecentLines) -> None:
        self.name = name
        self.key = name_key(name)
        self.members: dict[str, Member[P]] = {}
        self.history = history
        self.loading = False
        self.waiting: list[tuple[Member[P], Notice]] = []
        self._audience: Audience[P] | None = None
        self._addresses: Counter[str] = Counter()

    def add(self, member: Member[P]) -> None:
        """Put ``member`` (who has a nickname) in the room."""
        assert member.nick is not None
        self.members[name_key(member.nick)] = member
        member.rooms[self.key] = self
        self.changed()
        self._addresses[member.address] += 1

    def remove(self, member: Member[P]) -> None:
        """Take ``member`` out of the room."""
        assert member.nick is not None
        del self.members[name_key(member.nick)]
        del member.rooms[self.key]
        self.changed()
        addresses = self._addresses
        addresses[member.address] -= 1
        if not addresses[member.address]:
            del addresses[member.address]

    def holder(self) -> str | None:
        """The address everyone in the room comes from, or None (several, or no one)."""
        addresses = self._addresses
        return next(iter(addresses)) if len(addresses) == 1 else None

    def rename(self, member: Member[P], old_nick: str) -> None:
        """``member`` was called ``old_nick`` and now has a new nickname."""
        del self.members[name_key(old_nick)]
        assert member.nick is not None
        self.members[name_key(member.nick)] = member
        self.changed()

    def changed(self) -> None:
        """Who is in the room, or how one of them wants events rendered, changed."""
        self._audience = None

    def audience(self) -> Audience[P]:
        """Everyone in the room now, grouped by rendering (kept until the membership changes)."""
        if self._audience is None:
            self._audience = group(self.members.values())
        return self._audience

    def others(self, member: Member[P]) -> Audience[P]:
        """Everyone in the room but ``member``."""
        return group(m for m in self.members.values() if m is not member)

    def nicks(self) -> list[str]:
        """The members' nicknames, sorted without regard to case."""
        return sorted((m.nick for m in self.members.values() if m.nick), key=str.casefold)
