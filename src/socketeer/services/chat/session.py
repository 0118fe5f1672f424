"""The chat's thin asyncio layer: bytes in from members, deliveries out to them.

Each connection is a :class:`ChatSession`; all of them share one
:class:`~.protocol.ChatProtocol`, which decides who gets what.  Deliveries
made while the event loop runs its callbacks are gathered per member and
written once at the end of the pass, so a busy room costs one write per
member per pass, not one per line.

One slow member never stalls the others: writes never wait, and a member
whose unsent output would pass ``max_queue`` bytes (it stopped reading, or
its socket buffer is full) is told, taken out of the chat at once, and
closed; if it still has not read its backlog after :data:`DROP_LINGER`
seconds, the connection is dropped.  The kernel's send buffer per member is
fixed at :data:`SEND_BUFFER` so the kernel cannot hide megabytes of backlog.

Many slow members together are bounded too: when the unsent output of all
members would pass ``max_queue_total`` bytes, the members with the largest
backlogs are cut off at once, their backlogs discarded, until it fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from ...host import Host
from ...service import Service
from ...session import Session
from ...stream import ByteStream
from ...throttle import AuthThrottle
from ...visible import visible
from .commands import Msg, Nick, Offer
from .errands import Errands, Spawn
from .events import Notice, Private
from .lines import NOWHERE, SERVER, Stamp, format_line
from .logins import LoginCheck, Registry
from .network import ChatNetwork, OfferAnswer, RoomEvent, Roster
from .protocol import Addressed, Ask, ChatProtocol, ChatSettings
from .rendering import Delivery, deliveries
from .room import Member, Room
from .state import ChatState, MemoryState

if TYPE_CHECKING:
    from .dropbox import DropBox

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_TOTAL",
    "DROP_LINGER",
    "ChatService",
    "ChatSession",
    "Outbox",
]

log = logging.getLogger("socketeer.server")

#: Unsent bytes a member may have waiting before it counts as not reading.
DEFAULT_MAX_QUEUE = 256 * 1024
#: Unsent bytes all members together may have waiting.
DEFAULT_MAX_QUEUE_TOTAL = 64 * 1024 * 1024
#: Seconds a dropped member gets to read what it was sent before the connection is cut.
DROP_LINGER = 5.0
#: The kernel's send buffer per member.  Fixed, so that the kernel does not grow it
#: to megabytes for a member that stopped reading: ``max_queue`` decides instead.
SEND_BUFFER = 64 * 1024
#: Password checks (scrypt: 16 MiB and tens of ms each) the chat runs at once.
CHECKS_AT_ONCE = 2
#: Characters of a name a log line quotes.
SHOWN_NAME = 64


class Outbox:
    """Deliveries gathered during one pass of the event loop, written at its end.

    Keeps each member's unsent bytes under ``max_queue`` and all members'
    together under ``max_queue_total``.
    """

    def __init__(self, max_queue: int, max_queue_total: int = DEFAULT_MAX_QUEUE_TOTAL) -> None:
        if max_queue < 1 or max_queue_total < 1:
            raise ValueError("max_queue and max_queue_total must be at least 1 byte")
        self.max_queue = max_queue
        self.max_queue_total = max_queue_total
        self._dirty: list[ChatSession] = []
        self._scheduled = False
        #: Each member with unsent bytes, and how many there were when last looked at.
        self._queued: dict[ChatSession, int] = {}
        #: The sum of ``_queued``: never less than the bytes really waiting.
        self._total = 0

    @property
    def queued(self) -> int:
        """Unsent bytes of all members, as last looked at (at most ``max_queue_total``)."""
        return self._total

    def post(self, batch: Iterable[Delivery[ChatSession]]) -> None:
        """Queue each delivery's bytes for each of its members."""
        dirty = self._dirty
        for peers, data in batch:
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
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            behind: list[ChatSession] = []
            for session in dirty:
                pending = session.pending
                if session.closing:
                    pending.clear()
                    continue
                stream = session.stream
                if not self._write(session, stream, pending):
                    behind.append(session)
                elif session.close_after_flush:
                    stream.close()
            for session in behind:
                session.drop(f"not reading: more than {self.max_queue} bytes waiting to be sent")
        self._scheduled = False

    def forget(self, session: ChatSession) -> None:
        """``session``'s connection is gone: its unsent bytes are no more."""
        self._total -= self._queued.pop(session, 0)

    def _write(self, session: ChatSession, stream: ByteStream, pending: list[bytes]) -> bool:
        """Write ``pending`` within the limits; False if the member cannot take it all."""
        limit = self.max_queue
        incoming = sum(map(len, pending))
        before = self._queued.get(session, 0)  # never less than what is waiting
        if before + incoming > limit or self._total + incoming > self.max_queue_total:
            before = stream.write_buffered  # look
            self._note(session, before)
            if self._total + incoming > self.max_queue_total:
                self._shed(session, incoming)
                if stream.closing:
                    pending.clear()
                    return True
        fits = True
        if before + incoming <= limit:
            stream.write(pending[0] if len(pending) == 1 else b"".join(pending))
        else:  # as much as the member takes now, and up to max_queue more
            for data in pending:
                stream.write(data)
                if stream.write_buffered > limit:
                    fits = False
                    break
        pending.clear()
        after = stream.write_buffered
        if after or before:
            self._note(session, after)
        return fits

    def _note(self, session: ChatSession, waiting: int) -> None:
        queued = self._queued
        self._total += waiting - queued.get(session, 0)
        if waiting:
            queued[session] = waiting
        else:
            queued.pop(session, None)

    def _shed(self, writing: ChatSession, incoming: int) -> None:
        """Make room for ``incoming`` more bytes: look again, then cut the biggest backlogs."""
        for session in list(self._queued):
            self._note(session, 0 if session.closing else session.stream.write_buffered)
        budget = self.max_queue_total
        queued = self._queued
        for session in sorted(queued, key=queued.__getitem__, reverse=True):
            if self._total + incoming <= budget:
                return
            backlog = queued[session]
            session.cut(
                f"server output over {budget} bytes; {backlog} were waiting for this member"
            )
            self.forget(session)
            if session is writing:
                return


class ChatSession(Session):
    """One member's connection."""

    def __init__(
        self,
        host: Host,
        chat: ChatProtocol[ChatSession],
        outbox: Outbox,
        logins: Logins | None = None,
        errands: Errands[ChatSession] | None = None,
    ) -> None:
        super().__init__(host)
        self._chat = chat
        self._errands = errands
        self._outbox = outbox
        self._logins = logins
        self._member: Member[ChatSession] | None = None
        self._linger: asyncio.TimerHandle | None = None
        #: Bytes delivered during this pass of the event loop, not yet written.
        self.pending: list[bytes] = []
        #: Close the connection once the pending bytes are written (/quit, end of input).
        self.close_after_flush = False

    # asyncio callbacks ------------------------------------------------------------

    def started(self) -> None:
        stream = self.stream
        stream.set_send_buffer(SEND_BUFFER)
        self._member, events = self._chat.connect(
            self,
            self.host.now(),
            time.time(),
            stream.address_key,
        )
        self._post(events)

    def data_received(self, data: bytes) -> None:
        member = self._member
        if member is None or member.gone:
            return
        try:
            events = self._chat.receive(member, data, self.host.now(), time.time())
            if events:  # a whole line arrived: the member is not idle
                self.messages += 1
            self._post(events)
        except Exception:
            log.exception("chat session with %s failed", self.peer)
            self.abort("internal server error")
            return
        if member.held is not None:  # until the history of a room it joined arrives
            self.stream.pause_reading()
        if member.finished:
            self._close_when_written()

    def _start_checks(self) -> None:
        """Check the passwords members gave, each in a task; their lines wait meanwhile."""
        for check in self._chat.take_checks():
            check.peer.check_password(check)

    def check_password(self, check: LoginCheck[ChatSession]) -> None:
        """Check ``check`` in a task; what the member sends next waits for the answer."""
        logins = self._logins
        if logins is None or self.closing:
            return
        self.stream.pause_reading()
        self.host.spawn(self._checking(logins, check), f"login check for {self.peer}")

    async def _checking(self, logins: Logins, check: LoginCheck[ChatSession]) -> None:
        address = self.stream.address_key
        refusal = await logins.check(check.name, check.password, address, self.peer)
        member = self._member
        if member is None or self.closing:
            return
        self._post(self._chat.checked(member, check, refusal, self.host.now(), time.time()))
        self.resumed()

    def eof_received(self) -> bool:
        member = self._member
        if member is not None and not member.gone:
            self._post(self._chat.end_of_input(member, self.host.now(), time.time()))
            if member.held is not None:
                # closed by resumed(), once its held lines are acted on (over TLS: now)
                return not self.stream.secure
        self._close_when_written()
        return not self.stream.secure  # closed above, once the replies are written

    def resumed(self) -> None:
        """What this member waited for (a history, a password check) came; its held lines
        were acted on."""
        member = self._member
        if member is None or self.closing:
            return
        self._post([])
        if member.held is None:
            self.stream.resume_reading()
        if member.finished or member.gone:
            self._close_when_written()

    def ended(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._outbox.forget(self)
        member = self._member
        if member is not None and not member.gone:
            self._post(self._chat.disconnect(member, time.time()))

    def _post(self, events: list[Addressed[ChatSession]]) -> None:
        """Queue the deliveries of ``events``; fetch the history of rooms that came into use."""
        self._outbox.post(deliveries(events))
        chat = self._chat
        for room in chat.take_loads():
            loading = load_history(chat, room, self.host.now, self._outbox)
            self.host.spawn(loading, f"history of {room.name}")
        for ask in chat.take_asks():
            asking = answer(chat, ask, self.host.now, self._outbox)
            self.host.spawn(asking, "a question to the chat's other nodes")
        self._start_checks()
        if self._errands is not None:
            self._errands.run(self.host.spawn)

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
            self._post(self._chat.disconnect(member, time.time(), reason))
        super().abort(reason)

    def notify_failure(self, reason: str) -> None:
        if not self.closing:
            self.stream.write(self._chat.error_line(time.time(), reason, self._member))

    def drop(self, reason: str) -> None:
        """The member fell too far behind: tell it, close, and cut it off if it stays silent."""
        if self.closing:
            return
        self.abort(reason)
        loop = asyncio.get_running_loop()
        self._linger = loop.call_later(DROP_LINGER, self.kill)

    def cut(self, reason: str) -> None:
        """Take the member out of the chat (telling the room why) and drop its backlog now."""
        member = self._member
        if member is not None and not member.gone:
            self._post(self._chat.disconnect(member, time.time(), reason))
        log.info("cutting off %s: %s", self.peer, reason)
        self.kill()


async def load_history(
    chat: ChatProtocol[ChatSession],
    room: Room[ChatSession],
    now: Callable[[], float] = time.monotonic,
    outbox: Outbox | None = None,
) -> None:
    """Fetch ``room``'s history from the chat's state and show it to who is waiting for it."""
    assert chat.state is not None
    try:
        past = await chat.state.recent(room.key)
    except Exception:
        log.exception("cannot read the history of %s", room.name)
        past = []
    sessions = [member.peer for member, _ in room.waiting]
    events = chat.history_loaded(room, past, now(), time.time())
    if outbox is not None:
        outbox.post(deliveries(events))
    for session in sessions:
        session.resumed()


async def answer(
    chat: ChatProtocol[ChatSession],
    ask: Ask[ChatSession],
    now: Callable[[], float],
    outbox: Outbox,
) -> None:
    """Put ``ask`` to the chat's other nodes and give the protocol the answer."""
    network = chat.network
    assert network is not None
    member = ask.member
    result: bool | Roster | Private | str | None
    try:
        match ask.command:
            case Nick(nick):
                result = await network.claim(nick)
            case Msg(nick, text):
                assert member.nick is not None
                private = Private(time.time(), member.nick, nick, visible(text))
                result = await network.whisper(private)
            case Offer(nick):
                result = await network.find(nick)
            case OfferAnswer() as offer_answer:
                result = await network.forward(offer_answer)
            case _:
                result = await network.roster()
    except Exception:  # answered as if the other nodes were out of reach
        log.exception("a question to the chat's other nodes failed")
        result = True if isinstance(ask.command, Nick) else None
    outbox.post(deliveries(chat.answered(ask, result, now(), time.time())))
    member.peer.resumed()


class _Arrivals:
    """What the other nodes send this one, delivered to its members.

    An answer to an offer held here may give the drop box work (deleting the
    file): ``errands`` start it, in tasks ``spawn`` starts.
    """

    def __init__(
        self,
        chat: ChatProtocol[ChatSession],
        outbox: Outbox,
        errands: Errands[ChatSession],
        spawn: Spawn,
    ) -> None:
        self._chat = chat
        self._outbox = outbox
        self._errands = errands
        self._spawn = spawn

    def room_event(self, room: str, event: RoomEvent) -> None:
        self._outbox.post(deliveries(self._chat.remote(room, event)))

    def private(self, message: Private) -> None:
        self._outbox.post(deliveries(self._chat.private(message)))

    def degraded(self, reason: str) -> None:
        text = (
            "the chat is degraded: this server cannot reach the others;"
            " you reach only the members on this server until it can"
        )
        self._outbox.post(deliveries(self._chat.announce("degraded", text, time.time())))

    def restored(self) -> None:
        text = "the chat is whole again: you reach the members on every server"
        self._outbox.post(deliveries(self._chat.announce("restored", text, time.time())))

    def nick_lost(self, nick: str, new: str) -> None:
        self._outbox.post(deliveries(self._chat.nick_lost(nick, new, time.time())))

    def told(self, node: str, key: str, notice: Notice) -> None:
        self._outbox.post(deliveries(self._chat.told(node, key, notice)))

    def answered(self, answer: OfferAnswer) -> None:
        self._errands.post(self._chat.forwarded(answer, time.time()))
        self._errands.run(self._spawn)

    def node_gone(self, node: str) -> None:
        self._outbox.post(deliveries(self._chat.node_gone(node, time.time())))


class Logins:
    """Checks members' passwords: in threads, a few at a time, throttled per address."""

    def __init__(
        self,
        registry: Registry,
        throttle: AuthThrottle | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.throttle = throttle if throttle is not None else AuthThrottle()
        self.clock = clock
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def check(self, name: str, password: str, address: str, peer: str) -> str | None:
        """None if ``password`` is the account ``name``'s, else why not.

        A failure is counted against ``address``, logged at warning, and
        answered late; a banned address is refused at once.
        """
        throttle = self.throttle
        banned = throttle.ban_remaining(address, self.clock())
        shown = visible(name[:SHOWN_NAME])
        if banned:
            log.warning('%s: refused login as "%s": banned', peer, shown)
            wait = math.ceil(banned)
            return f"too many failed logins from {visible(address)}; try again in {wait} s"
        async with self._checks:
            account = await asyncio.to_thread(self.registry.accounts.authenticate, name, password)
        if account is not None:
            throttle.succeeded(address, self.clock())
            log.info("%s: logged in as %s", peer, account.name)
            return None
        failure = throttle.failed(address, self.clock())
        log.warning('%s: failed login as "%s"', peer, shown)
        if failure.banned_for:
            log.warning(
                "%s: banned for %d s after %d failed logins",
                peer,
                math.ceil(failure.banned_for),
                failure.failures,
            )
        await asyncio.sleep(failure.delay)
        return "wrong password"


class ChatService(Service):
    """A chat server: rooms, nicknames, private messages, history, flood and backlog limits.

    ``max_queue`` is how many unsent bytes a member may have waiting before it
    is disconnected as not reading; ``max_queue_total`` how many all members
    together may have before the ones furthest behind are cut off.  ``state``
    keeps the rooms' histories (:mod:`.state`; by default in memory, for as
    long as the process runs): the server starts it and closes it.  With a
    ``registry`` (accounts), registered nicknames need their password; failed
    logins are throttled per address by ``throttle``.  Without a ``network``
    one ChatService is one chat: run it in one process (its rooms live in
    memory).  With one (:mod:`.network`, e.g. Redis), any number of processes,
    on any number of machines, are one chat.
    """

    name = "chat"
    default_framing = "line"
    datagrams = False

    def __init__(
        self,
        settings: ChatSettings | None = None,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_total: int = DEFAULT_MAX_QUEUE_TOTAL,
        state: ChatState | None = None,
        registry: Registry | None = None,
        throttle: AuthThrottle | None = None,
        network: ChatNetwork | None = None,
        dropbox: DropBox | None = None,
    ) -> None:
        self._outbox = Outbox(max_queue, max_queue_total)
        self.settings = settings = settings or ChatSettings()
        #: What keeps the rooms' histories.
        self.state = state or MemoryState(settings.history, settings.history_bytes)
        #: The chat's other processes (None: this one is the whole chat).
        self.network = network
        offers = dropbox.desk if dropbox is not None else None
        self.chat: ChatProtocol[ChatSession] = ChatProtocol(
            settings, self.state, registry, network, offers
        )
        #: Offered files' drop box (None: the chat has none).
        self.dropbox = dropbox
        self._errands = Errands(self.chat, self._outbox, dropbox)
        #: Password checks for registered nicknames (None: no accounts).
        self.logins = Logins(registry, throttle) if registry is not None else None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the chat's state (and network) and fetch the default room's history."""
        await self.state.start()
        tasks: set[asyncio.Task[None]] = set()

        def spawn(work: Coroutine[Any, Any, None], name: str) -> None:
            task = asyncio.get_running_loop().create_task(work, name=name)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        try:
            if self.network is not None:
                arrivals = _Arrivals(self.chat, self._outbox, self._errands, spawn)
                await self.network.start(arrivals)
                if self.dropbox is not None:  # its offers' ids name this node
                    self.dropbox.desk.prefix = f"{self.network.node}-"
            try:
                for room in self.chat.take_loads():
                    await load_history(self.chat, room)
                if self.dropbox is None:
                    yield
                else:
                    async with self.dropbox.running(self._errands.tell):
                        yield
            finally:
                if self.network is not None:
                    await self.network.close()
                for task in list(tasks):
                    task.cancel()
        finally:
            await self.state.close()

    @property
    def max_queue(self) -> int:
        """Unsent bytes a member may have waiting before it is disconnected."""
        return self._outbox.max_queue

    @property
    def max_queue_total(self) -> int:
        """Unsent bytes all members together may have waiting."""
        return self._outbox.max_queue_total

    @property
    def queued(self) -> int:
        """Unsent bytes of all members, as last looked at."""
        return self._outbox.queued

    def new_session(self, host: Host) -> ChatSession:
        from .web import WebChatSession  # builds on ChatSession: imported once it exists

        return WebChatSession(host, self.chat, self._outbox, self.logins, self._errands)

    def refusal(self, reason: str) -> bytes:
        """A refused member is told in a chat line: ``14:03:07 - -!- error: server busy: ...``."""
        return format_line(Stamp()(time.time()), NOWHERE, SERVER, f"error: {visible(reason)}")
