"""What the chat asks of the I/O layer beyond its replies: offline messages, offered files.

After each call into the :class:`~.protocol.ChatProtocol`, the session runs
:meth:`Errands.run`: messages for offline registered members go to the
chat's state (:meth:`~.state.ChatState.keep_message`), a member who logged
in gets what was kept for it (:meth:`~.state.ChatState.take_messages`), and
the drop box (:mod:`.dropbox`) does the disk work of offered files.  Each
is a task the host owns; none holds up the member's lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .events import Private
from .names import name_key
from .offers import Note
from .protocol import Addressed, ChatProtocol
from .rendering import deliveries
from .room import Member

if TYPE_CHECKING:
    from .dropbox import DropBox
    from .session import Outbox

__all__ = ["Errands"]

log = logging.getLogger("socketeer.server")

P = TypeVar("P")
#: Starts a task the server owns: a coroutine and its name.
Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class Errands(Generic[P]):
    """The I/O side of ``chat``'s offline messages and offered files; deliveries go to
    ``outbox``."""

    def __init__(
        self, chat: ChatProtocol[P], outbox: Outbox, dropbox: DropBox | None = None
    ) -> None:
        self.chat = chat
        self.outbox = outbox
        self.dropbox = dropbox

    def post(self, events: list[Addressed[P]]) -> None:
        """Deliver ``events``."""
        if events:
            self.outbox.post(deliveries(events))  # type: ignore[arg-type]

    def tell(self, notes: list[Note]) -> None:
        """Deliver notices addressed to nickname keys, to those online."""
        self.post(self.chat.tell(notes))

    def run(self, spawn: Spawn) -> None:
        """Start what the chat asked for since the last call."""
        chat = self.chat
        kept = chat.take_kept()
        if kept:
            spawn(self._keep(kept), "keeping offline messages")
        for member in chat.take_inboxes():
            spawn(self._deliver(member), f"messages kept for {member.nick}")
        if self.dropbox is not None:
            self.dropbox.start_jobs(spawn)

    async def _keep(self, kept: list[tuple[str, Private]]) -> None:
        state = self.chat.state
        assert state is not None
        for key, message in kept:
            try:
                await state.keep_message(key, message)
            except Exception:
                log.exception("cannot keep a message for %s", message.recipient)

    async def _deliver(self, member: Member[P]) -> None:
        state = self.chat.state
        assert state is not None
        assert member.nick is not None
        key = name_key(member.nick)
        try:
            messages = await state.take_messages(key)
        except Exception:
            log.exception("cannot read the messages kept for %s", member.nick)
            return
        if member.gone:  # it left meanwhile: keep them for next time
            await self._keep([(key, message) for message in messages])
            return
        self.post(self.chat.inbox_taken(member, messages, time.time()))
