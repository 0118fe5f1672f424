"""Chat state in Redis: the rooms' histories and offline messages, shared by every node.

Each room's history is a list, ``history:KEY`` (after the link's prefix),
of lines in the JSON rendering's fields.  Appending a line queues
an ``RPUSH`` and an ``LTRIM`` to the newest ``lines`` on the node's link
(:mod:`.redis_link`): they go with the other commands of the same pass of the
event loop, in one pipeline.  The byte bound (``size``) is applied when a
history is read.  Offline messages are a list per nickname,
``messages:KEY``, at most :data:`~.state.MAX_OFFLINE_MESSAGES` long.

While Redis is out of reach, lines said are not kept (the members still see
them) and a room coming into use starts with no history.
"""

from __future__ import annotations

import json

from .events import Acted, Private, Said
from .history import Line, RecentLines
from .redis_link import LINK_ERRORS, LinkDown, RedisLink
from .rendering import JSON, parse_json
from .state import DEFAULT_HISTORY_BYTES, DEFAULT_KEPT_ROOMS, MAX_OFFLINE_MESSAGES, ChatState

__all__ = ["RedisState"]


class RedisState(ChatState):
    """Histories and offline messages in the Redis behind ``link``."""

    def __init__(
        self,
        link: RedisLink,
        lines: int = 50,
        size: int = DEFAULT_HISTORY_BYTES,
        rooms: int = DEFAULT_KEPT_ROOMS,
    ) -> None:
        super().__init__(lines, size, rooms)
        self.link = link

    def _key(self, kind: str, name: str) -> str:
        return f"{self.link.prefix}{kind}:{name}"

    async def start(self) -> None:
        await self.link.start()

    async def close(self) -> None:
        await self.link.close()

    def append(self, room: str, line: Line) -> None:
        if not self.lines:
            return
        key = self._key("history", room)
        self.link.send("RPUSH", key, json.dumps(JSON.fields(line), separators=(",", ":")))
        self.link.send("LTRIM", key, -self.lines, -1)

    async def recent(self, room: str) -> list[Line]:
        if not self.lines:
            return []
        try:
            rows = await self.link.call("LRANGE", self._key("history", room), -self.lines, -1)
        except (LinkDown, *LINK_ERRORS):
            return []
        kept = RecentLines(self.lines, self.size)
        for row in rows:
            try:
                line = parse_json(row)
            except ValueError:
                continue
            if isinstance(line, Said | Acted):
                kept.append(line)
        return list(kept)

    async def flush(self) -> None:
        try:
            await self.link.call("PING")
        except (LinkDown, *LINK_ERRORS):
            return

    async def keep_message(self, nick: str, message: Private) -> None:
        key = self._key("messages", nick)
        self.link.send("RPUSH", key, json.dumps(JSON.fields(message), separators=(",", ":")))
        self.link.send("LTRIM", key, -MAX_OFFLINE_MESSAGES, -1)

    async def take_messages(self, nick: str) -> list[Private]:
        try:
            rows = await self.link.call("LPOP", self._key("messages", nick), MAX_OFFLINE_MESSAGES)
        except (LinkDown, *LINK_ERRORS):
            return []
        taken = [parse_json(row) for row in rows or ()]
        return [message for message in taken if isinstance(message, Private)]
