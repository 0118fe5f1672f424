"""One chat over several processes: what a node tells the others, and asks of them.

A chat served by several ``serve chat`` processes (workers, or machines) is
one chat when each process, a *node*, is given a :class:`ChatNetwork`.  The
protocol (:mod:`.protocol`) calls its plain methods as things happen, and
they return at once (they only queue: a line said is one publish, written
with the others of the same pass of the event loop):

- :meth:`~ChatNetwork.opened` and :meth:`~ChatNetwork.closed`: a room came
  into use on this node, or went out of use; the node receives what is said
  in the rooms it has open and nothing else.
- :meth:`~ChatNetwork.publish`: something happened in a room (a line said or
  done, someone joined, left or was renamed), for the other nodes' members.
- :meth:`~ChatNetwork.present` and :meth:`~ChatNetwork.released`: a member
  of this node, and the rooms it is in; a nickname this node no longer holds.

What only the network can answer is ``async`` and awaited by the I/O layer,
never by the protocol: whether a nickname is free across the chat
(:meth:`~ChatNetwork.claim`), who is online on the other nodes
(:meth:`~ChatNetwork.roster`), and passing a private message to the node of
its recipient (:meth:`~ChatNetwork.whisper`).  While one is on its way the
member's further lines wait, as they do for a room's history.

Files offered between members cross nodes the same ways: a notice about an
offer for a member of another node is passed on (:meth:`~ChatNetwork.tell`),
the recipient of an ``/offer`` is looked for on the other nodes
(:meth:`~ChatNetwork.find`), and a recipient's answer (``/accept``,
``/decline``, ``/received``) goes to the node whose drop box holds the file
(:meth:`~ChatNetwork.forward`): an offer's id opens with that node's name
(:func:`offer_node`).

What comes from the other nodes is told to a :class:`NetworkListener`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol

from .events import Acted, Joined, Left, Notice, Private, Renamed, Said

__all__ = ["ChatNetwork", "NetworkListener", "OfferAnswer", "RoomEvent", "Roster", "offer_node"]

#: What happens in a room and is told to the room's members on every node.
RoomEvent = Said | Acted | Joined | Left | Renamed
#: Who is online on the other nodes: each member's nickname and the rooms it is in.
Roster = list[tuple[str, list[str]]]


def offer_node(offer_id: str) -> str:
    """The node whose drop box holds the offer ``offer_id`` (``NODE-N``); "" for an id
    made without a network (``N``)."""
    return offer_id.rpartition("-")[0]


@dataclass(frozen=True)
class OfferAnswer:
    """The member whose nickname has ``key`` answers ``verb`` to offer ``offer_id``, held on
    ``node``."""

    node: str
    key: str
    verb: Literal["accept", "decline", "received"]
    offer_id: str


class NetworkListener(Protocol):
    """What a node is told by the network (the chat service implements it)."""

    def room_event(self, room: str, event: RoomEvent) -> None:
        """``event`` happened on another node in the room keyed ``room``."""

    def private(self, message: Private) -> None:
        """A member of another node sent ``message`` to a member of this one."""

    def degraded(self, reason: str) -> None:
        """The other nodes are out of reach: the chat goes on with this node's members."""

    def restored(self) -> None:
        """The other nodes are in reach again."""

    def nick_lost(self, nick: str, new: str) -> None:
        """``nick`` turned out to be held on another node: its member here is now ``new``."""

    def told(self, node: str, key: str, notice: Notice) -> None:
        """``node`` tells the member here whose nickname has ``key`` ``notice`` (about an offer)."""

    def answered(self, answer: OfferAnswer) -> None:
        """A member of another node answers an offer made on this node."""

    def node_gone(self, node: str) -> None:
        """``node``, which told members here about offers, is gone (stopped, or died)."""


class ChatNetwork(ABC):
    """The other nodes of the chat, as one node sees them."""

    #: This node's name among the others, once started ("" when there are none).
    node = ""

    async def start(self, listener: NetworkListener) -> None:  # noqa: B027
        """Join the network; what arrives from it is told to ``listener``."""

    async def close(self) -> None:  # noqa: B027
        """Leave the network: release this node's nicknames."""

    @abstractmethod
    def opened(self, room: str) -> None:
        """The room keyed ``room`` came into use on this node: receive its events."""

    @abstractmethod
    def closed(self, room: str) -> None:
        """The room keyed ``room`` is no longer in use on this node."""

    @abstractmethod
    def publish(self, room: str, event: RoomEvent) -> None:
        """Tell the other nodes' members of the room keyed ``room`` about ``event``."""

    @abstractmethod
    def present(self, nick: str, rooms: list[str]) -> None:
        """A member of this node is called ``nick`` and is in ``rooms`` (their names)."""

    @abstractmethod
    def released(self, nick: str) -> None:
        """No member of this node is called ``nick`` any more: free it for the chat."""

    @abstractmethod
    async def claim(self, nick: str) -> bool:
        """Hold ``nick`` for a member of this node; False if it is held elsewhere."""

    @abstractmethod
    async def roster(self) -> Roster:
        """Who is online on the other nodes."""

    @abstractmethod
    async def whisper(self, message: Private) -> Private | None:
        """Pass ``message`` to the node holding its recipient's nickname.

        Returns it with the recipient named as that member is, or None when
        no member of another node has that nickname.
        """

    def tell(self, key: str, notice: Notice) -> None:  # noqa: B027
        """Pass ``notice`` to the member of another node whose nickname has ``key``, if any."""

    async def find(self, nick: str) -> str | None:
        """``nick`` as a member of another node is called, or None if none is."""
        return None

    async def forward(self, answer: OfferAnswer) -> bool | None:
        """Pass ``answer`` to the node holding the offer.

        True once it is on its way; False if that node is gone; None if it is
        out of reach (it may be back later).
        """
        return None
