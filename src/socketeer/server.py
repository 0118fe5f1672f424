"""The asyncio server: listeners on many endpoints, sessions, limits, shutdown.

A :class:`Server` serves one :class:`~socketeer.service.Service` on any mix of
TCP (IPv4 and IPv6), Unix stream and UDP endpoints at once.  It owns its
listeners and sessions: :meth:`Server.stop` stops accepting, lets sessions
finish within a grace period, then closes the rest.  :func:`serve` runs a
server until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from .binding import BoundSocket, bind_endpoint, remove_unix_socket
from .endpoint import Endpoint
from .framing import Framing
from .service import Service
from .session import DatagramSession, Session, SessionService, StreamSession

__all__ = ["Server", "ServerConfig", "serve"]

log = logging.getLogger("socketeer.server")


@dataclass(frozen=True)
class ServerConfig:
    """Limits and options, with defaults that are safe on a public port.

    ``framing`` None means the service's own default.  ``max_message_size``
    None means the framing's default (64 KiB lines, 16 MiB frames).
    ``max_conns`` and the other limits apply per process.
    """

    framing: Framing | None = None
    max_message_size: int | None = None
    max_conns: int = 10_000
    idle_timeout: float | None = 300.0
    grace: float = 5.0
    reuse_port: bool = False


class Server:
    """Serves ``service`` on ``endpoints``; use ``async with`` or start()/stop().

    ``inherited`` are sockets already bound by a parent process (workers).
    """

    def __init__(
        self,
        service: Service,
        endpoints: Sequence[Endpoint],
        config: ServerConfig | None = None,
        *,
        inherited: Sequence[BoundSocket] = (),
    ) -> None:
        self.service = service
        self.config = config or ServerConfig()
        self._endpoints = list(endpoints)
        self._inherited = list(inherited)
        self._bound: list[BoundSocket] = []
        self._listeners: list[asyncio.Server] = []
        self._datagram_transports: list[asyncio.BaseTransport] = []
        self._sessions: set[Session] = set()
        self._all_gone = asyncio.Event()
        self._cut_short = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def endpoints(self) -> list[Endpoint]:
        """What the server actually listens on (real ports, one per socket)."""
        return [bound.actual for bound in self._bound]

    @property
    def session_count(self) -> int:
        """How many sessions are open now."""
        return len(self._sessions)

    async def start(self) -> list[Endpoint]:
        """Bind every endpoint and start accepting; return the bound endpoints."""
        loop = asyncio.get_running_loop()
        service = self.service
        new_session: Callable[[], Session] = (
            (lambda: service.new_session(self))
            if isinstance(service, SessionService)
            else (lambda: StreamSession(self))
        )
        self._bound = list(self._inherited)
        try:
            for endpoint in self._endpoints:
                self._bound += bind_endpoint(endpoint, reuse_port=self.config.reuse_port)
            for bound in self._bound:
                if bound.requested.is_stream:
                    listener = await loop.create_server(new_session, sock=bound.sock)
                    self._listeners.append(listener)
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: DatagramSession(self), sock=bound.sock
                    )
                    self._datagram_transports.append(transport)
        except BaseException:
            self._close_listeners()
            raise
        if self.config.idle_timeout:
            self._sweeper = asyncio.create_task(self._sweep_idle(self.config.idle_timeout))
        return self.endpoints

    def admit(self, session: Session) -> str | None:
        """Take ``session`` in, or return why not (the client is told, then closed)."""
        if self._cut_short.is_set() or not self._listeners:
            return "server is shutting down"
        if len(self._sessions) >= self.config.max_conns:
            return f"server busy: {self.config.max_conns} connections already open"
        self._sessions.add(session)
        self._all_gone.clear()
        return None

    def release(self, session: Session) -> None:
        """Forget a session whose connection is gone."""
        self._sessions.discard(session)
        if not self._sessions:
            self._all_gone.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give sessions ``grace`` seconds to end, then close the rest."""
        grace = self.config.grace if grace is None else grace
        self._close_listeners()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._sessions and grace > 0:
            log.warning(
                "stopping: waiting up to %gs for %d session(s) to end", grace, len(self._sessions)
            )
            await self._wait_for_sessions(grace)
        for session in list(self._sessions):
            session.abort("server is shutting down")
        await self._wait_for_sessions(1.0)
        for session in list(self._sessions):
            session.kill()
        await self._wait_for_sessions(1.0)

    def cut_short(self) -> None:
        """End the grace period now (a second Ctrl-C)."""
        self._cut_short.set()

    async def _wait_for_sessions(self, timeout: float) -> None:
        if not self._sessions:
            return
        waits = [
            asyncio.ensure_future(self._all_gone.wait()),
            asyncio.ensure_future(self._cut_short.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for transport in self._datagram_transports:
            transport.close()
        self._datagram_transports.clear()
        for bound in self._bound:
            if bound not in self._inherited:  # a parent that shared it removes it
                remove_unix_socket(bound)
            bound.sock.close()

    async def _sweep_idle(self, timeout: float) -> None:
        """Close sessions that sent nothing for ``timeout`` seconds.

        One timer for the whole server instead of one per session: each pass
        marks sessions that were active since the last pass, and closes those
        that have stayed quiet for the whole timeout.
        """
        loop = asyncio.get_running_loop()
        interval = max(timeout / 4, 0.01)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for session in list(self._sessions):
                if session.active:
                    session.active = False
                    session.idle_since = now
                elif now - session.idle_since >= timeout:
                    session.abort(f"idle for {timeout:g} seconds")

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    server: Server,
    on_ready: Callable[[list[Endpoint]], None] | None = None,
    stop: asyncio.Event | None = None,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """Run ``server`` until SIGINT/SIGTERM (or ``stop`` is set), then stop it gracefully.

    ``on_ready`` is called with the bound endpoints once the server accepts.
    A second signal during the grace period closes the remaining sessions at once.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            server.cut_short()
        stop.set()

    await server.start()
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        if on_ready is not None:
            on_ready(server.endpoints)
        await stop.wait()
        await server.stop()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
