"""The chat's nodes joined through Redis: pub/sub for delivery, keys with a TTL for nicknames.

Keys and channels (each after the link's prefix, ``socketeer:chat:``):

- ``room:KEY`` (channel): what happens in the room keyed KEY, published by the
  node where it happened as ``NODE\\nJSON`` (the JSON rendering's fields);
  every node with the room in use is subscribed and ignores its own.
- ``node:NODE`` (channel): what is for the members of one node: private
  messages (their JSON), notices about offered files (``told NODE KEY`` and
  the notice's JSON, on two lines: from NODE, for the member whose nickname
  has key KEY), and members' answers to the offers the node holds
  (``answer KEY VERB ID``).  A node that told members of this one about
  offers is watched: once its ``members:NODE`` hash is gone at two refreshes
  in a row (the node stopped, or died and its TTL ran out), its offers expire
  for them.
- ``nick:KEY``: the node holding the nickname keyed KEY, set with ``SET NX``
  and a TTL (``ttl``) that the node refreshes every third of it; a node that
  dies holds its nicknames no longer than that.
- ``members:NODE`` (hash, same TTL): each member of the node, by nickname key:
  ``[nick, [rooms]]``, and the field ``""`` while the node lives;
  ``nodes:all`` (set): the nodes that may have members.

A node whose link goes down keeps serving its members; when Redis answers
again it subscribes anew, writes its members again and re-claims their
nicknames.  A nickname that another node claimed meanwhile stays with that
node: the member here is renamed to the first free of ``NICK_2``, ``NICK_3``...
and told why.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from dataclasses import replace
from typing import Any

from redis.asyncio.client import PubSub

from .events import Notice, Private
from .names import MAX_NICK_LENGTH, name_key, nick_problem
from .network import ChatNetwork, NetworkListener, OfferAnswer, RoomEvent, Roster
from .redis_link import LINK_ERRORS, LinkDown, RedisLink
from .rendering import JSON, parse_json

__all__ = ["DEFAULT_TTL", "RedisNetwork"]

log = logging.getLogger("socketeer.server")

#: Seconds a nickname stays held after its node stops refreshing it.
DEFAULT_TTL = 30.0

#: Delete KEYS[1] if it still holds ARGV[1] (this node's claim), and nothing else's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: Refresh this node's claims on KEYS (ARGV: node, TTL in ms), claiming those that expired;
#: return the keys another node holds.
_REFRESH = """
local lost = {}
for _, key in ipairs(KEYS) do
    local holder = redis.call('GET', key)
    if holder == ARGV[1] then
        redis.call('PEXPIRE', key, ARGV[2])
    elseif not holder then
        redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    else
        table.insert(lost, key)
    end
end
return lost
"""


class RedisNetwork(ChatNetwork):
    """This node's view of the other nodes, through the Redis behind ``link``."""

    def __init__(self, link: RedisLink, ttl: float = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.link = link
        self.ttl = ttl
        #: This node's name, made when it starts (after a fork, so each worker has its own).
        self.node = ""
        self._rooms: set[str] = set()
        #: This node's members, by nickname key: their nickname and rooms.
        self._members: dict[str, tuple[str, list[str]]] = {}
        self._listener: NetworkListener | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._degraded = False
        #: Notices for members of other nodes, passed on in order by one task.
        self._tells: collections.deque[tuple[str, Notice]] = collections.deque()
        self._teller: asyncio.Task[None] | None = None
        #: The other nodes that told members here about offers, and whether their
        #: ``members`` hash was missing the last time it was looked for.
        self._watched: dict[str, bool] = {}

    # names ------------------------------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self.link.prefix}{kind}:{name}"

    @property
    def _node_channel(self) -> str:
        return self._key("node", self.node)

    @property
    def _hash(self) -> str:
        return self._key("members", self.node)

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    # life -------------------------------------------------------------------------------

    async def start(self, listener: NetworkListener) -> None:
        self.node = uuid.uuid4().hex[:8]  # short: offers' ids open with it
        self._listener = listener
        self.link.on_down(self._down)
        self.link.on_up(self._resync)
        if self.link.client is None:
            await self.link.start()  # resynchronises through on_up
        elif self.link.up:  # started by the state, before this was listening
            try:
                await self._resync()
            except (LinkDown, *LINK_ERRORS) as exc:
                self.link.down(str(exc) or type(exc).__name__)
        else:
            self._degraded = True
        self._refresher = asyncio.create_task(self._refresh_forever(), name="nickname refresh")

    async def close(self) -> None:
        for task in (self._refresher, self._reader, self._teller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for key in self._members:
            self.link.send("EVAL", _RELEASE, 1, self._key("nick", key), self.node)
        self.link.send("DEL", self._hash)
        self.link.send("SREM", self._key("nodes", "all"), self.node)
        await self._close_pubsub()
        await self.link.close()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*LINK_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _down(self, reason: str) -> None:
        self._degraded = True
        if self._listener is not None:
            self._listener.degraded(reason)

    async def _resync(self) -> None:
        """Redis answers (again): subscribe, write this node's members, re-claim their nicknames."""
        if self._reader is not None:
            self._reader.cancel()
        await self._close_pubsub()
        assert self.link.client is not None
        pubsub = self._pubsub = self.link.client.pubsub()
        channels = [self._node_channel, *(self._key("room", room) for room in self._rooms)]
        await pubsub.subscribe(*channels)
        self._reader = asyncio.create_task(self._read(pubsub), name="redis subscription")
        self.link.send("DEL", self._hash)
        for nick, rooms in self._members.values():
            self._write_member(nick, rooms)
        lost = await self._refresh()
        for key in lost:
            await self._move_away(key)
        if self._degraded:
            self._degraded = False
            if self._listener is not None:
                self._listener.restored()

    async def _refresh(self) -> list[str]:
        """Refresh this node's claims and records; the nickname keys another node holds."""
        keys = [self._key("nick", key) for key in self._members]
        self.link.send("SADD", self._key("nodes", "all"), self.node)
        self.link.send("HSET", self._hash, "", self.node)  # the node is alive, members or not
        self.link.send("PEXPIRE", self._hash, self._ttl_ms)
        if not keys:
            return []
        held = await self.link.call("EVAL", _REFRESH, len(keys), *keys, self.node, self._ttl_ms)
        prefix = len(self._key("nick", ""))
        return [bytes(key).decode()[prefix:] for key in held]

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if not self.link.up:
                continue
            try:
                lost = await self._refresh()
                for key in lost:
                    await self._move_away(key)
                await self._look_at_watched()
            except (LinkDown, *LINK_ERRORS) as exc:
                self.link.down(str(exc))

    async def _look_at_watched(self) -> None:
        """Tell the listener of the watched nodes that are gone.

        A node is gone when its ``members`` hash is missing twice in a row: once
        may be a Redis that restarted empty, before the node wrote it again.
        """
        for node, missing in list(self._watched.items()):
            if await self.link.call("EXISTS", self._key("members", node)):
                self._watched[node] = False
            elif not missing:
                self._watched[node] = True
            else:
                del self._watched[node]
                if self._listener is not None:
                    self._listener.node_gone(node)

    async def _move_away(self, key: str) -> None:
        """The nickname keyed ``key`` is held elsewhere: rename its member here."""
        entry = self._members.get(key)
        if entry is None or self._listener is None:
            return
        nick = entry[0]
        for number in range(2, 1000):
            suffix = f"_{number}"
            candidate = nick[: MAX_NICK_LENGTH - len(suffix)] + suffix
            if nick_problem(candidate) or name_key(candidate) in self._members:
                continue
            if await self.claim(candidate):
                log.warning("nickname %s is held on another node; renaming it %s", nick, candidate)
                self._listener.nick_lost(nick, candidate)
                return

    # what arrives -----------------------------------------------------------------------

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None:
                    self._arrived(message["channel"], message["data"])
        except LINK_ERRORS as exc:
            self.link.down(str(exc) or type(exc).__name__)

    def _arrived(self, channel: bytes, data: bytes) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            name = channel.decode()
            if name == self._node_channel:
                self._for_this_node(listener, data)
                return
            node, _, body = data.partition(b"\n")
            if node.decode() == self.node:
                return
            event = parse_json(body)
            room = name[len(self._key("room", "")) :]
        except ValueError:
            log.debug("not a chat event on %r: %r", channel, data[:200])
            return
        if not isinstance(event, Private):
            listener.room_event(room, event)  # type: ignore[arg-type]

    def _for_this_node(self, listener: NetworkListener, data: bytes) -> None:
        """A message on this node's channel (ValueError if it is not one)."""
        if data.startswith(b"{"):
            message = parse_json(data)
            if isinstance(message, Private):
                listener.private(message)
            return
        head, _, body = data.partition(b"\n")
        words = head.decode().split(" ")
        if words[0] == "told" and len(words) == 3:
            notice = parse_json(body)
            if isinstance(notice, Notice):
                self._watched[words[1]] = False
                listener.told(words[1], words[2], notice)
        elif words[0] == "answer" and len(words) == 4 and words[2] in _VERBS:
            listener.answered(OfferAnswer(self.node, words[1], words[2], words[3]))  # type: ignore[arg-type]
        else:
            raise ValueError(f"no such message: {head[:40]!r}")

    # what the protocol tells ------------------------------------------------------------

    def opened(self, room: str) -> None:
        self._rooms.add(room)
        self._subscription("subscribe", room)

    def closed(self, room: str) -> None:
        self._rooms.discard(room)
        self._subscription("unsubscribe", room)

    def _subscription(self, change: str, room: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.link.up:
            return  # subscribed at the next resynchronisation
        channel = self._key("room", room)

        async def change_it() -> None:
            try:
                await getattr(pubsub, change)(channel)
            except LINK_ERRORS as exc:
                self.link.down(str(exc) or type(exc).__name__)

        asyncio.get_running_loop().create_task(change_it())

    def publish(self, room: str, event: RoomEvent) -> None:
        if self.link.up:
            body = json.dumps(JSON.fields(event), separators=(",", ":"))
            self.link.send("PUBLISH", self._key("room", room), f"{self.node}\n{body}")

    def present(self, nick: str, rooms: list[str]) -> None:
        self._members[name_key(nick)] = (nick, rooms)
        self._write_member(nick, rooms)

    def _write_member(self, nick: str, rooms: list[str]) -> None:
        self.link.send("HSET", self._hash, name_key(nick), json.dumps([nick, rooms]))

    def released(self, nick: str) -> None:
        key = name_key(nick)
        if self._members.pop(key, None) is None:
            return
        self.link.send("HDEL", self._hash, key)
        self.link.send("EVAL", _RELEASE, 1, self._key("nick", key), self.node)

    # what the I/O layer asks --------------------------------------------------------------

    async def claim(self, nick: str) -> bool:
        if not self.link.up:
            return True  # kept here; settled when Redis is back
        try:
            reply = await self.link.call(
                "SET", self._key("nick", name_key(nick)), self.node, "NX", "PX", self._ttl_ms
            )
        except (LinkDown, *LINK_ERRORS):
            return True
        return bool(reply)

    async def roster(self) -> Roster:
        if not self.link.up:
            return []
        try:
            nodes = await self.link.call("SMEMBERS", self._key("nodes", "all"))
            others = [bytes(n).decode() for n in nodes if bytes(n).decode() != self.node]
            records: list[Any] = await asyncio.gather(
                *(self.link.call("HGETALL", self._key("members", node)) for node in others)
            )
        except (LinkDown, *LINK_ERRORS):
            return []
        roster: Roster = []
        for node, fields in zip(others, records, strict=True):
            if not fields:  # the node is gone: its members expired with it
                self.link.send("SREM", self._key("nodes", "all"), node)
            for field, value in fields.items():
                if not field:
                    continue
                nick, rooms = json.loads(value)
                roster.append((str(nick), [str(room) for room in rooms]))
        return roster

    async def _holder(self, key: str) -> tuple[str, str] | None:
        """The other node holding the nickname keyed ``key``, and its member's nickname."""
        if not self.link.up:
            return None
        try:
            holder = await self.link.call("GET", self._key("nick", key))
            if holder is None or bytes(holder).decode() == self.node:
                return None
            node = bytes(holder).decode()
            record = await self.link.call("HGET", self._key("members", node), key)
        except (LinkDown, *LINK_ERRORS):
            return None
        if record is None:
            return None
        return node, str(json.loads(record)[0])

    async def whisper(self, message: Private) -> Private | None:
        found = await self._holder(name_key(message.recipient))
        if found is None:
            return None
        node, nick = found
        delivered = replace(message, recipient=nick)
        self.link.send("PUBLISH", self._key("node", node), _json(delivered))
        return delivered

    async def find(self, nick: str) -> str | None:
        found = await self._holder(name_key(nick))
        return found[1] if found is not None else None

    def tell(self, key: str, notice: Notice) -> None:
        if not self.link.up:
            return
        self._tells.append((key, notice))
        if self._teller is None or self._teller.done():
            self._teller = asyncio.get_running_loop().create_task(self._tell_all(), name="tell")

    async def _tell_all(self) -> None:
        """Pass the queued notices on, in order, each to the node of its member."""
        while self._tells:
            key, notice = self._tells.popleft()
            found = await self._holder(key)
            if found is not None:
                body = f"told {self.node} {key}\n{_json(notice)}"
                self.link.send("PUBLISH", self._key("node", found[0]), body)

    async def forward(self, answer: OfferAnswer) -> bool | None:
        if not self.link.up:
            return None
        body = f"answer {answer.key} {answer.verb} {answer.offer_id}"
        try:
            heard = await self.link.call("PUBLISH", self._key("node", answer.node), body)
            if heard:
                return True
            alive = await self.link.call("EXISTS", self._key("members", answer.node))
        except (LinkDown, *LINK_ERRORS):
            return None
        return None if alive else False


#: What a member may answer to an offer.
_VERBS = ("accept", "decline", "received")


def _json(event: Notice | Private) -> str:
    return json.dumps(JSON.fields(event), separators=(",", ":"))
