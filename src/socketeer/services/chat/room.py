"""Members and the rooms they talk in.

``P`` is whatever the I/O layer uses to reach a member (its session); the
chat never looks inside it, it only names it in deliveries.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Generic, TypeVar

from ...ratelimit import TokenBucket
from .events import Acted, Said
from .incoming import LineSplitter
from .names import name_key
from .rendering import TEXT, Audience, Form, group

__all__ = ["Member", "Room"]

P = TypeVar("P")


class Member(Generic[P]):
    """One connection to the chat: who it is, where it is, how fast it may talk."""

    __slots__ = (
        "account",
        "address",
        "bucket",
        "finished",
        "form",
        "gone",
        "held",
        "nick",
        "password",
        "peer",
        "room",
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
        self.room: Room[P] | None = None
        #: Told that lines are being dropped, and has not slowed down since.
        self.throttled = False
        #: The member asked to leave (/quit): close once its deliveries are written.
        self.finished = False
        #: No longer in the chat.
        self.gone = False
        #: The account the member logged in to (its name), if any.
        self.account: str | None = None
        #: A ``PASS`` line's password, for the nickname still to come.
        self.password: str | None = None
        #: Lines that arrived while a password was being checked (None: none is).
        self.held: list[str] | None = None

    def __repr__(self) -> str:
        return f"<Member {self.nick or '(no nickname)'} in {self.room.name if self.room else '-'}>"


class Room(Generic[P]):
    """A named room: its members, where they come from, and the last ``history`` lines."""

    __slots__ = ("_addresses", "_audience", "history", "members", "name")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.members: dict[str, Member[P]] = {}
        self.history: deque[Said | Acted] = deque(maxlen=history)
        self._audience: Audience[P] | None = None
        self._addresses: Counter[str] = Counter()

    def add(self, member: Member[P]) -> None:
        """Put ``member`` (who has a nickname) in the room."""
        assert member.nick is not None
        self.members[name_key(member.nick)] = member
        member.room = self
        self.changed()
        self._addresses[member.address] += 1

    def remove(self, member: Member[P]) -> None:
        """Take ``member`` out of the room."""
        assert member.nick is not None
        del self.members[name_key(member.nick)]
        member.room = None
        self.changed()
        addresses = self._addresses
        addresses[member.address] -= 1
        if not addresses[member.address]:
            del addresses[member.address]

    def held_by(self, address: str) -> bool:
        """Whether everyone in the room comes from ``address``."""
        return len(self._addresses) == 1 and address in self._addresses

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
