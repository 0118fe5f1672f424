"""One node's connection to Redis: its commands in order, one pipeline per pass, and outages.

Every command a node sends goes through :class:`RedisLink`: :meth:`~RedisLink.send`
queues one whose reply nobody waits for (a publish, a history append) and
returns at once, :meth:`~RedisLink.call` queues one and awaits its reply.  A
single writer task takes everything queued since it last ran, which under
load is everything one pass of the event loop queued, and sends it as one
pipeline: a busy room costs one round trip per pass, not one per line, and
the node's commands reach Redis in the order they were queued.

When Redis cannot be reached (it restarts, the network fails), the link is
*down*: queued commands are dropped (a waiting :meth:`call` raises
:class:`LinkDown`), ``on_down`` callbacks are told why, and the link tries
again after a backoff (0.1 s doubling to 5 s).  Once Redis answers, the
``on_up`` callbacks resynchronise (they may fail, and the link tries again);
then the link is up.  Nothing here ever ends the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ...errors import SocketeerError
from .backoff import Backoff

__all__ = ["DEFAULT_PREFIX", "LINK_ERRORS", "LinkDown", "RedisLink", "redis_url_problem"]

log = logging.getLogger("socketeer.server")

#: What every key and channel of the chat starts with.
DEFAULT_PREFIX = "socketeer:chat:"
#: What a lost or refused connection to Redis raises.
LINK_ERRORS = (RedisError, OSError)
#: Seconds to connect, and to wait for a reply, before Redis counts as out of reach.
TIMEOUT = 3.0


class LinkDown(SocketeerError):
    """Redis is out of reach; the command was not sent."""


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL this chat can use, or None."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "a Redis URL starts with redis://, rediss:// or unix://"
    try:
        aioredis.ConnectionPool.from_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def _where(url: str) -> str:
    """``url`` without its password, for logs."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


class RedisLink:
    """The node's commands to Redis at ``url``, pipelined in order, surviving outages."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        #: What every key and channel starts with.
        self.prefix = prefix
        #: Redis answers, and the ``on_up`` callbacks have run since it last did not.
        self.up = False
        self.client: aioredis.Redis | None = None
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any] | None]] = []
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnecting: asyncio.Task[None] | None = None
        self._on_up: list[Callable[[], Awaitable[None]]] = []
        self._on_down: list[Callable[[str], None]] = []
        self._started = False
        self._connecting = False

    @property
    def where(self) -> str:
        """The Redis URL without its password."""
        return _where(self.url)

    def on_up(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` each time Redis is reached (first, and after each outage)."""
        self._on_up.append(callback)

    def on_down(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` each time Redis goes out of reach."""
        self._on_down.append(callback)

    # life -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (or, if Redis is out of reach, keep trying in the background)."""
        if self._started:
            return
        self._started = True
        self.client = aioredis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
        )
        self._wake = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._write(), name="redis writer"))
        problem = await self._connect()
        if problem is not None:
            self._went_down(problem)

    async def close(self) -> None:
        """Send what is queued (if Redis is up), then let go of the connection."""
        if not self._started:
            return
        self._started = False
        if self.up:
            with contextlib.suppress(LinkDown, *LINK_ERRORS):
                await asyncio.wait_for(self.call("PING"), TIMEOUT)
        self.up = False
        for task in [*self._tasks, self._reconnecting]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        self._fail(self._take())
        if self.client is not None:
            await self.client.aclose()

    # commands ---------------------------------------------------------------------------

    def send(self, *command: Any) -> None:
        """Queue ``command``; nobody waits for its reply (dropped if Redis is out of reach)."""
        if self.up:
            self._queue(command, None)

    async def call(self, *command: Any) -> Any:
        """Queue ``command`` after everything queued so far and return its reply.

        Raises :class:`LinkDown` if Redis is out of reach, and Redis's own
        error if it refuses the command.
        """
        if not self.up or self._wake is None:
            raise LinkDown(f"redis at {self.where} is out of reach")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(command, done)
        return await done

    def _queue(self, command: tuple[Any, ...], done: asyncio.Future[Any] | None) -> None:
        self._queued.append((command, done))
        if self._wake is not None:
            self._wake.set()

    def _take(self) -> list[tuple[tuple[Any, ...], asyncio.Future[Any] | None]]:
        queued, self._queued = self._queued, []
        return queued

    def _fail(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any] | None]]) -> None:
        for _, done in batch:
            if done is not None and not done.done():
                done.set_exception(LinkDown(f"redis at {self.where} is out of reach"))

    async def _write(self) -> None:
        """Send what was queued since the last time, as one pipeline."""
        assert self._wake is not None
        assert self.client is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = self._take()
            if not self.up:
                self._fail(batch)
                continue
            pipe = self.client.pipeline(transaction=False)
            for command, _ in batch:
                pipe.execute_command(*command)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except LINK_ERRORS as exc:
                self._fail(batch)
                self.down(str(exc) or type(exc).__name__)
                continue
            for (_, done), reply in zip(batch, replies, strict=True):
                if done is None or done.done():
                    continue
                if isinstance(reply, Exception):
                    done.set_exception(reply)
                else:
                    done.set_result(reply)

    # outages ----------------------------------------------------------------------------

    def down(self, reason: str) -> None:
        """Redis went out of reach (a command or the subscription failed): tell, and retry."""
        if not self._started or self._connecting or not self.up:
            return
        self.up = False
        self._fail(self._take())
        self._went_down(reason)

    def _went_down(self, reason: str) -> None:
        log.warning("redis at %s: %s; members go on talking on this node", self.where, reason)
        for callback in self._on_down:
            callback(reason)
        self._reconnecting = asyncio.create_task(self._reconnect(), name="redis reconnect")

    async def _connect(self) -> str | None:
        """Reach Redis and resynchronise; why it cannot be done now, or None."""
        assert self.client is not None
        self._connecting = True
        try:
            await self.client.ping()
            self.up = True
            for callback in self._on_up:
                await callback()
        except (LinkDown, *LINK_ERRORS) as exc:
            self.up = False
            self._fail(self._take())
            return str(exc) or type(exc).__name__
        finally:
            self._connecting = False
        return None

    async def _reconnect(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            await asyncio.sleep(backoff.next())
            problem = await self._connect()
            if problem is None:
                log.warning("redis at %s is back: one chat with the other nodes", self.where)
                return
            log.debug("redis at %s: %s", self.where, problem)
