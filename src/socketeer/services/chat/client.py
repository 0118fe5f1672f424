"""A chat member as a program: connect, send lines, receive parsed lines, reconnect.

    client = ChatClient("127.0.0.1:1234", "alice")
    await client.connect()
    await client.send("hello everyone")
    async for event in client.events():
        print(event)            # ChatLine, or Connected / Disconnected

When the connection drops, :meth:`ChatClient.events` yields a
:class:`Disconnected` with the delay before the next attempt, reconnects with
exponential backoff, yields :class:`Connected`, and asks again for the
member's nickname and every room it was in (before the nickname, so that it
lands in them straight away, not in the default room first; a member who had
left every room lands in none).  A nickname that is taken gets ``_``
appended, as IRC clients do.  The server's prompt for a nickname is answered,
not shown.  Lines are sent no faster than the server's rate limit allows (it
says which with the nickname), so none is dropped.

:meth:`ChatClient.connect` returns once the server's first line has shown
it to be a chat server; anything else is :class:`NotAChatServer`, which is
never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from ...client import AsyncConnection
from ...endpoint import Endpoint, parse_endpoint
from ...errors import (
    ConnectionClosed,
    LocalProtocolError,
    NetworkError,
    RemoteProtocolError,
    Timeout,
)
from ...quantity import quantity
from ...ratelimit import TokenBucket
from ...tls import ClientTLS, alpn
from ...visible import visible
from .backoff import Backoff
from .events import Notice
from .lines import NOWHERE, ChatLine, parse_line
from .names import MAX_NICK_LENGTH, nick_problem
from .rendering import JSON, TEXT, parse_json

__all__ = [
    "ChatClient",
    "ChatEvent",
    "Connected",
    "Disconnected",
    "NotAChatServer",
]

#: The longest line the client accepts from a server (a /who of a very full room).
MAX_RECEIVED_LINE = 1024 * 1024
#: How many times a taken nickname gets one more ``_`` before the member is left to choose.
ALTERNATE_NICKS = 3


@dataclass(frozen=True)
class Connected:
    """The connection is (again) up."""

    endpoint: str


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped; ``retry_in`` seconds until the next attempt (None: no retry)."""

    reason: str
    retry_in: float | None


class NotAChatServer(RemoteProtocolError):
    """The server answered, but not as a chat server does; the message says what it said."""


#: How a text line of the chat opens: ``HH:MM:SS `` (a 0 stands for any digit).
_TIME_OPENING = b"00:00:00 "
#: How much of a stranger's first words a NotAChatServer quotes.
_QUOTED = 60


#: What :meth:`ChatClient.events` yields: a line, or news of the connection.
ChatEvent = ChatLine | Connected | Disconnected


def _plain_tcp(endpoint: Endpoint) -> Endpoint | None:
    """``endpoint`` if it is plain TCP (where a TLS server may be what answers), else None."""
    return endpoint if endpoint.transport == "tcp" and not endpoint.tls else None


class ChatClient:
    """One member of a chat server, reconnecting with backoff when the connection drops."""

    def __init__(
        self,
        endpoint: str | Endpoint,
        nick: str,
        *,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        tls: ClientTLS | None = None,
        password: str | None = None,
    ) -> None:
        problem = nick_problem(nick)
        if problem:
            raise ValueError(f'"{visible(nick)}" cannot be a nickname: {problem}')
        self.endpoint = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
        #: The nickname the server last confirmed (or the one asked for, before that).
        self.nick = nick
        #: The room the member talks in, as the server last said; None for none.
        self.room: str | None = None
        #: Every room the member is in, in the order it joined them.
        self.rooms: list[str] = []
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        #: How a ``tls://`` server is trusted (see :class:`~socketeer.tls.ClientTLS`).
        self.tls = tls or ClientTLS(alpn=(alpn("chat"),))
        self._password = password  # for a registered nickname: sent as PASS first
        self._conn: AsyncConnection | None = None
        self._wanted: str | None = nick  # a nickname asked for and not yet confirmed
        self._tries = 0
        self._closing = False
        self._welcomed = False  # the server has shown itself a chat server
        self._pending: list[ChatLine] = []  # its first lines, not yet yielded
        self._named_once = False  # the server has confirmed a nickname on some connection
        self._named = asyncio.Event()  # ... on this connection
        self._bucket: TokenBucket | None = None  # the server's rate limit, once it said it
        self._sent: list[float] = []  # when lines were sent before the limit was known
        self._connected_at = 0.0

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self._conn is not None

    async def connect(self) -> None:
        """Connect, ask for the nickname, and wait for the server's welcome.

        Raises ConnectError if the server cannot be reached, and
        NotAChatServer if what answers is not
        a chat server: its first line is not one of the chat's, or it says
        nothing within ``connect_timeout`` seconds, or it hangs up without a
        word (once the server has been a chat server, these two are a
        Timeout and a ConnectionClosed, so that the client retries).
        """
        conn = await AsyncConnection.connect(
            self.endpoint, timeout=self.connect_timeout, tls=self.tls
        )
        conn.timeout = None  # a chat may stay quiet for hours
        self._conn = conn
        self._wanted = self.nick
        self._tries = 0
        self._named.clear()
        self._bucket = None
        self._sent = []
        self._connected_at = time.monotonic()
        try:
            with contextlib.suppress(NetworkError):  # what it said before it hung up comes first
                await self.send(f"/format {JSON.name}")
                if self._named_once:  # land where the member was: its rooms, the current last
                    rooms = [room for room in self.rooms if room != self.room]
                    rooms += [self.room] if self.room in self.rooms else []
                    for room in rooms:
                        await self.send(f"/join {room}")
                    if not rooms:
                        await self.send("/leave")
                if self._password is not None:
                    await self.send(f"PASS {self._password}")
                await self.send(f"/nick {self.nick}")
            self._pending = self._welcome(await self._first_line(conn))
        except BaseException:
            await self._drop()
            raise
        self._welcomed = True

    async def _first_line(self, conn: AsyncConnection) -> bytes:
        """The server's first line, or as much of it as shows it is not a chat line."""
        head = b""
        try:
            async with asyncio.timeout(self.connect_timeout):
                while (opens := _opens_chat_line(head)) is None:
                    head += await conn.recvexactly(1)
                if opens:
                    return head + await conn.recvline(limit=MAX_RECEIVED_LINE)
        except TimeoutError:
            if not head:
                raise self._silent(
                    Timeout, f"said nothing within {quantity(self.connect_timeout, 'second')}"
                ) from None
            return head
        except ConnectionClosed as exc:
            if not head + exc.partial:
                raise self._silent(
                    ConnectionClosed,
                    "closed the connection without answering"
                    + (
                        " (if it speaks TLS, use tls://)"
                        if self.endpoint == _plain_tcp(self.endpoint)
                        else ""
                    ),
                ) from None
            return head + exc.partial
        with contextlib.suppress(TimeoutError, NetworkError):  # the rest of its first words
            async with asyncio.timeout(0.2):
                head += await conn.recv(_QUOTED)
        return head

    def _silent(self, kind: type[NetworkError], what: str) -> NetworkError | NotAChatServer:
        """A server that did not answer: retried if it was a chat server before, else not one."""
        if self._welcomed:
            return kind(f"{self.endpoint} {what}")
        return NotAChatServer(f"{self.endpoint} is not a chat server (it {what})")

    def _welcome(self, raw: bytes) -> list[ChatLine]:
        """The lines the server's first line shows, if it is a chat server's."""
        first = raw.split(b"\n", 1)[0].rstrip(b"\r")
        lines = _parse(first, strict=True)
        if not lines:
            said = first.decode("utf-8", "replace")[:_QUOTED]
            raise NotAChatServer(f"{self.endpoint} is not a chat server (it said {said!r})")
        return [line for line in lines if line.error]  # its prompt for a nickname is answered

    async def send(self, line: str) -> None:
        """Send one line (a message or a command).

        Raises ConnectionClosed while disconnected, LocalProtocolError for a
        line with a line break in it.
        """
        if "\n" in line or "\r" in line:
            raise LocalProtocolError("a chat line cannot contain a line break")
        conn = self._conn
        if conn is None:
            raise ConnectionClosed(f"not connected to {self.endpoint}")
        await self._pace()
        await conn.sendline(line)

    async def _pace(self) -> None:
        """Wait until the server's rate limit allows one more line."""
        bucket = self._bucket
        if bucket is None:
            self._sent.append(time.monotonic())
            return
        while not bucket.allow(time.monotonic()):
            await asyncio.sleep(1 / bucket.rate)

    async def wait_named(self, timeout: float) -> bool:
        """Wait until the server confirms a nickname on this connection; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._named.wait()
        except TimeoutError:
            return False
        return True

    async def events(self) -> AsyncIterator[ChatEvent]:
        """Every line received, parsed, and every drop and reconnection, until :meth:`close`."""
        while self._conn is not None:
            pending, self._pending = self._pending, []
            for line in pending:
                if await self._follow(line):
                    yield line
            if self._conn is None:
                break
            try:
                raw = await self._conn.recvline(limit=MAX_RECEIVED_LINE)
            except NetworkError as exc:
                await self._drop()
                if self._closing:
                    return
                if not self.reconnect:
                    yield Disconnected(_reason(exc), None)
                    return
                async for event in self._reconnect(_reason(exc)):
                    yield event
                continue
            for line in _parse(raw):
                if await self._follow(line):
                    yield line

    async def quit(self, message: str = "") -> None:
        """Say goodbye (``/quit``) and let :meth:`events` run on until the server closes."""
        self._closing = True
        with contextlib.suppress(NetworkError):
            await self.send(f"/quit {message}".rstrip())

    async def close(self, message: str = "") -> None:
        """Say goodbye (``/quit``) and close the connection."""
        self._closing = True
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(NetworkError, OSError):
            async with asyncio.timeout(1.0):
                await conn.sendline(f"/quit {message}".rstrip())
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.close()

    async def _reconnect(self, reason: str) -> AsyncIterator[ChatEvent]:
        while not self._closing:
            delay = self.backoff.next()
            yield Disconnected(reason, delay)
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self.connect()
            except NetworkError as exc:
                await self._drop()
                reason = _reason(exc)
                continue
            self.backoff.reset()
            yield Connected(str(self.endpoint))
            return

    async def _follow(self, line: ChatLine) -> bool:
        """Keep track of the nickname and room the server says the member has, by code.

        False for a line that is the client's own business (the answer to ``/format``).
        """
        event = line.event
        if not isinstance(event, Notice):
            return True
        data = event.data
        match event.code:
            case "format" | "landing":
                return False
            case "nick":
                self.nick = str(data["nick"])
                self._wanted = None
                self._named_once = True
                self._named.set()
                self._limit(data.get("rate"), data.get("burst"))
            case "joined":
                self.room = room = str(data["room"])
                if room not in self.rooms:
                    self.rooms.append(room)
            case "switched":
                self.room = str(data["room"])
            case "left":
                room = str(data["room"])
                if room in self.rooms:
                    self.rooms.remove(room)
                current = data.get("current")
                self.room = current if isinstance(current, str) else None
            case "login-failed":
                self.reconnect = False  # trying again would only get the address banned
            case "nick-taken" if self._wanted is not None:
                self._tries += 1
                if self._tries <= ALTERNATE_NICKS and len(self._wanted) < MAX_NICK_LENGTH:
                    self._wanted += "_"
                    with contextlib.suppress(NetworkError):
                        await self.send(f"/nick {self._wanted}")
        return True

    def _limit(self, rate: object, burst: object) -> None:
        """The server allows ``rate`` lines a second in bursts of ``burst``: keep to it."""
        if not isinstance(rate, int | float) or not isinstance(burst, int) or burst < 1:
            return
        if rate <= 0:
            return
        # With a margin: the server counts lines when it reads them, and lines sent
        # apart may be read together when it falls behind.
        bucket = TokenBucket(float(rate) * 0.9, max(1, burst // 2), self._connected_at)
        for sent in self._sent:
            bucket.allow(sent)
        self._bucket = bucket


def _opens_chat_line(head: bytes) -> bool | None:
    """Whether a line opening with ``head`` is a chat line (text or JSON); None: undecided."""
    if head.startswith(b"{"):
        return True
    for want, got in zip(_TIME_OPENING, head, strict=False):
        if got != want and not (want == ord("0") and ord("0") <= got <= ord("9")):
            return False
    return True if len(head) >= len(_TIME_OPENING) else None


def _parse(raw: bytes, *, strict: bool = False) -> list[ChatLine]:
    """The lines one received line shows: a JSON event's, each carrying it, or a text line.

    A line in neither format is shown as it came, or, when ``strict``, not at all.
    """
    text = raw.decode("utf-8", "replace")
    if text.startswith("{"):
        try:
            event = parse_json(text)
        except ValueError:
            pass
        else:
            shown = TEXT.line(event).splitlines()
            return [replace(parse_line(line), event=event) for line in shown]
    try:
        return [parse_line(text)]
    except ValueError:
        return [] if strict else [ChatLine("", NOWHERE, "notice", None, text)]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ConnectionClosed):  # "... closed the connection before a line arrived"
        return str(exc).split(" before ", 1)[0]
    return str(exc)
