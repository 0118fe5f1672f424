"""The chat's thin asyncio layer: bytes in from members, deliveries out to them.

Each connection is a :class:`ChatSession`; all of them share one
:class:`~.protocol.ChatProtocol`, which decides who gets what.  Deliveries
made while the event loop runs its callbacks are gathered per member and
written once at the end of the pass, so a busy room costs one write per
member per pass, not one per line.

One slow member never stalls the others: writes never wait, and a member
whose unsent output passes ``max_queue`` bytes (it stopped reading, or its
socket buffer is full) is told, taken out of the chat at once, and closed;
if it still has not read its backlog after :data:`DROP_LINGER` seconds, the
connection is dropped.  The kernel's send buffer per member is fixed at
:data:`SEND_BUFFER` so the kernel cannot hide megabytes of backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from ...host import Host
from ...service import Service
from ...session import Session
from .protocol import ChatProtocol, ChatSettings, Delivery
from .room import Member

__all__ = ["DEFAULT_MAX_QUEUE", "DROP_LINGER", "ChatService", "ChatSession", "Outbox"]

log = logging.getLogger("socketeer.server")

#: Unsent bytes a member may have waiting before it counts as not reading.
DEFAULT_MAX_QUEUE = 256 * 1024
#: Seconds a dropped member gets to read what it was sent before the connection is cut.
DROP_LINGER = 5.0
#: The kernel's send buffer per member.  Fixed, so that the kernel does not grow it
#: to megabytes for a member that stopped reading: ``max_queue`` decides instead.
SEND_BUFFER = 64 * 1024


class Outbox:
    """Deliveries gathered during one pass of the event loop, written at its end."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._dirty: list[ChatSession] = []
        self._scheduled = False

    def post(self, deliveries: Iterable[Delivery[ChatSession]]) -> None:
        """Queue each delivery's bytes for each of its members."""
        dirty = self._dirty
        for peers, data in deliveries:
            for session in peers:
                pending = session.pending
                if not pending:
                    dirty.append(session)
                pending.append(data)
        if dirty and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what every member has pending; drop members that fell too far behind."""
        limit = self.max_queue
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            behind: list[ChatSession] = []
            for session in dirty:
                pending = session.pending
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                if session.closing:
                    continue
                stream = session.stream
                stream.write(data)
                if stream.write_buffered > limit:
                    behind.append(session)
                elif session.close_after_flush:
                    stream.close()
            for session in behind:
                session.drop(f"not reading: more than {limit} bytes waiting to be sent")
        self._scheduled = False


class ChatSession(Session):
    """One member's connection."""

    def __init__(self, host: Host, chat: ChatProtocol[ChatSession], outbox: Outbox) -> None:
        super().__init__(host)
        self._chat = chat
        self._outbox = outbox
        self._member: Member[ChatSession] | None = None
        self._linger: asyncio.TimerHandle | None = None
        #: Bytes delivered during this pass of the event loop, not yet written.
        self.pending: list[bytes] = []
        #: Close the connection once the pending bytes are written (/quit, end of input).
        self.close_after_flush = False

    # asyncio callbacks ------------------------------------------------------------

    def started(self) -> None:
        self.stream.set_send_buffer(SEND_BUFFER)
        self._member, deliveries = self._chat.connect(self, time.time())
        self._outbox.post(deliveries)

    def data_received(self, data: bytes) -> None:
        member = self._member
        if member is None or member.gone:
            return
        try:
            deliveries = self._chat.receive(member, data, time.time())
            if deliveries:  # a whole line arrived: the member is not idle
                self.messages += 1
            self._outbox.post(deliveries)
        except Exception:
            log.exception("chat session with %s failed", self.peer)
            self.abort("internal server error")
            return
        if member.finished:
            self._close_when_written()

    def eof_received(self) -> bool:
        member = self._member
        if member is not None and not member.gone:
            self._outbox.post(self._chat.end_of_input(member, time.time()))
        self._close_when_written()
        return True  # closed above, once the replies are written

    def ended(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        member = self._member
        if member is not None and not member.gone:
            self._outbox.post(self._chat.disconnect(member, time.time()))

    # closing ----------------------------------------------------------------------

    def _close_when_written(self) -> None:
        if self.pending:
            self.close_after_flush = True
        else:
            self.close()

    def abort(self, reason: str) -> None:
        """Take the member out of the chat (telling the room why), tell it, then close."""
        member = self._member
        if member is not None and not member.gone:
            self._outbox.post(self._chat.disconnect(member, time.time(), reason))
        super().abort(reason)

    def notify_failure(self, reason: str) -> None:
        if not self.closing:
            self.stream.write(self._chat.error_line(time.time(), reason))

    def drop(self, reason: str) -> None:
        """The member fell too far behind: tell it, close, and cut it off if it stays silent."""
        if self.closing:
            return
        self.abort(reason)
        loop = asyncio.get_running_loop()
        self._linger = loop.call_later(DROP_LINGER, self.kill)


class ChatService(Service):
    """A chat server: rooms, nicknames, private messages, history, flood and backlog limits.

    ``max_queue`` is how many unsent bytes a member may have waiting before it
    is disconnected as not reading.  One ChatService is one chat: run it in
    one process (its rooms live in memory).
    """

    name = "chat"
    default_framing = "line"
    datagrams = False

    def __init__(
        self, settings: ChatSettings | None = None, *, max_queue: int = DEFAULT_MAX_QUEUE
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1 byte")
        self.settings = settings or ChatSettings()
        self.chat: ChatProtocol[ChatSession] = ChatProtocol(self.settings)
        self._outbox = Outbox(max_queue)

    @property
    def max_queue(self) -> int:
        """Unsent bytes a member may have waiting before it is disconnected."""
        return self._outbox.max_queue

    def new_session(self, host: Host) -> ChatSession:
        return ChatSession(host, self.chat, self._outbox)
