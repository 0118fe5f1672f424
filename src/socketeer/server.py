"""The asyncio server: listeners on many endpoints, admission, sessions, limits, shutdown.

A :class:`Server` serves one :class:`~socketeer.service.Service` on any mix of
TCP (IPv4 and IPv6), Unix stream and UDP endpoints at once.  It decides
whether to take each connection before a session exists
(:meth:`Server.verify_request`, like socketserver's), and is the
:class:`~socketeer.host.Host` of every session it takes: it owns their tasks
and the service's life (:meth:`Service.running`).  :meth:`Server.stop` stops
accepting, lets sessions finish within a grace period, then closes the
rest and cancels what still runs.  :func:`serve` runs a server until SIGINT
or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import ssl
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from .access import AccessError, AccessRules, AccessSources
from .addresses import address_key
from .binding import BoundSocket, bind_endpoint, remove_unix_socket, system_backlog
from .datagram import DatagramLimits, HandlerDatagrams
from .endpoint import Endpoint, describe_peer
from .framing import Framing
from .host import DEFAULT_MIN_RATE, SessionLimits
from .idle import IdleSweep
from .proxy_doorway import ProxyDoorway, feed
from .quantity import quantity
from .service import Service
from .session import Session, StreamSession, handler_session
from .stats import ServerStats
from .stream import peer_address
from .tcpinfo import tcp_bytes
from .tls import ServerTLS, accept_tls, alpn
from .udp import DatagramEndpoint

if TYPE_CHECKING:
    from .health import HealthServer

__all__ = ["Server", "ServerConfig", "serve"]

log = logging.getLogger("socketeer.server")


@dataclass(frozen=True)
class ServerConfig:
    """Limits and options, with defaults that are safe on a public port.

    ``framing`` None means the service's own default.  ``max_message_size``
    None means the framing's default (64 KiB lines, 16 MiB frames).
    ``max_conns`` and the other limits apply per process;
    ``max_conns_per_ip`` (None: no limit) counts connections from one IP
    address.  ``idle_timeout`` (None: never) closes sessions that sent no
    whole message for that long; a transfer counts while it moves at least
    ``min_rate`` bytes a second.  ``backlog`` None means the system's
    ``somaxconn``.  ``udp_limits`` bound the replies to each UDP source
    address and in all (see docs/design.md, "Datagrams").  ``access`` says
    who may connect (``--allow``/``--deny``; reloaded from its files by
    :meth:`Server.reload_access`).  ``proxy_protocol`` makes every stream
    connection start with a PROXY header, whole within ``proxy_timeout``
    seconds, whose client address then counts everywhere.  ``health``
    serves ``/healthz`` and ``/metrics`` over HTTP there.
    """

    framing: Framing | None = None
    max_message_size: int | None = None
    max_conns: int = 10_000
    max_conns_per_ip: int | None = None
    idle_timeout: float | None = 300.0
    min_rate: int = DEFAULT_MIN_RATE
    grace: float = 5.0
    reuse_port: bool = False
    backlog: int | None = None
    udp_limits: DatagramLimits = field(default_factory=DatagramLimits)
    access: AccessSources = field(default_factory=AccessSources)
    proxy_protocol: bool = False
    proxy_timeout: float = 5.0
    health: Endpoint | None = None
    #: The certificate of ``tls://`` endpoints (see :mod:`socketeer.tls`).
    tls: ServerTLS | None = None

    @property
    def limits(self) -> SessionLimits:
        """What each session is told to keep."""
        return SessionLimits(self.framing, self.max_message_size, self.idle_timeout, self.min_rate)


class _Doorway(asyncio.Protocol):
    """Every new connection's first protocol: the server admits it or refuses it."""

    __slots__ = ("_server", "_tls")

    def __init__(self, server: Server, tls: ssl.SSLContext | None = None) -> None:
        self._server = server
        self._tls = tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._arrived(cast(asyncio.Transport, transport), tls=self._tls)


class Server:
    """Serves ``service`` on ``endpoints``; use ``async with`` or start()/stop().

    ``inherited`` are sockets already bound by a parent process (workers).
    Raises :class:`~socketeer.access.AccessError` if an access list cannot be read.
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
        self.config = config = config or ServerConfig()
        self.limits = config.limits
        self.log = log
        self._endpoints = list(endpoints)
        self._inherited = list(inherited)
        self._bound: list[BoundSocket] = []
        self._listeners: list[asyncio.Server] = []
        self._datagram_transports: list[asyncio.BaseTransport] = []
        # each session's address key (None: no IP) and transport
        self._sessions: dict[Session, tuple[str | None, asyncio.Transport]] = {}
        self._per_address: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_gone = asyncio.Event()
        self._cut_short = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._life = contextlib.AsyncExitStack()
        self._waiting_for_header: set[ProxyDoorway] = set()
        self._datagram_endpoints: list[DatagramEndpoint] = []
        self._health: HealthServer | None = None
        #: The allow and deny lists in force.
        self.access: AccessRules = config.access.load()
        #: Counts for ``/metrics``.
        self.stats = ServerStats()

    @property
    def endpoints(self) -> list[Endpoint]:
        """What the server actually listens on (real ports, one per socket)."""
        return [bound.actual for bound in self._bound]

    @property
    def health_endpoints(self) -> list[Endpoint]:
        """Where ``/healthz`` and ``/metrics`` are served (real ports; empty without ``health``)."""
        return self._health.endpoints if self._health is not None else []

    @property
    def session_count(self) -> int:
        """How many sessions are open now."""
        return len(self._sessions)

    @property
    def accepting(self) -> bool:
        """Whether the server takes new connections (False before start and while stopping)."""
        return bool(self._listeners or self._datagram_transports) and not self._cut_short.is_set()

    def open_counts(self) -> tuple[int, int, int]:
        """Messages, bytes received and bytes sent so far by open connections and UDP sockets."""
        messages = received = sent = 0
        for endpoint in self._datagram_endpoints:
            messages += endpoint.datagrams_received
            received += endpoint.bytes_received
            sent += endpoint.bytes_sent
        for session, (_, transport) in self._sessions.items():
            messages += session.messages
            got, gave = tcp_bytes(transport.get_extra_info("socket"))
            received += got
            sent += gave
        return messages, received, sent

    # the host of every session ------------------------------------------------------

    def now(self) -> float:
        """The event loop's monotonic clock."""
        return asyncio.get_running_loop().time()

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coroutine`` as a task this server owns (cancelled and awaited by :meth:`stop`)."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def release(self, session: object) -> None:
        """Forget a session whose connection is gone."""
        if session not in self._sessions:
            return
        address, transport = self._sessions.pop(session)
        assert isinstance(session, Session)
        self.stats.closed(session.messages, *tcp_bytes(transport.get_extra_info("socket")))
        if address is not None:
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]
        if not self._sessions:
            self._all_gone.set()

    def handler_session(self, service: Service) -> StreamSession:
        """A session running one of ``service``'s handlers."""
        return handler_session(self, service)

    # admission ----------------------------------------------------------------------

    def verify_request(self, address: str | None) -> str | None:
        """Whether to take a connection from ``address`` (None: no IP); return why not.

        ``address`` is the client's :func:`~socketeer.addresses.address_key`: an IPv4
        address, or an IPv6 client's /64 network.
        """
        if self._cut_short.is_set() or not self._listeners:
            return "server is shutting down"
        config = self.config
        if len(self._sessions) >= config.max_conns:
            return f"server busy: {config.max_conns} connections already open"
        per_ip = config.max_conns_per_ip
        if (
            per_ip is not None
            and address is not None
            and self._per_address.get(address, 0) >= per_ip
        ):
            return f"too many connections from {address} (at most {per_ip})"
        return None

    def reload_access(self) -> bool:
        """Read the access lists' files again; on a mistake keep the old lists and log it."""
        try:
            self.access = self.config.access.load()
        except AccessError as exc:
            log.error("access lists not reloaded (the old ones stay): %s", exc)
            return False
        log.warning(
            "access lists reloaded: %d allow, %d deny rules",
            len(self.access.allow),
            len(self.access.deny),
        )
        return True

    def _doorway(self, tls: ssl.SSLContext | None) -> Callable[[], asyncio.Protocol]:
        """The first protocol of each connection on a listener (``tls``: a ``tls://`` one)."""
        if not self.config.proxy_protocol:
            return lambda: _Doorway(self, tls)
        arrived = functools.partial(self._arrived, tls=tls)
        return lambda: ProxyDoorway(
            arrived,
            self._header_refused,
            self._waiting_for_header,
            timeout=self.config.proxy_timeout,
            max_pending=self.config.max_conns,
        )

    def _header_refused(self, reason: str) -> None:
        self.stats.refused["proxy_header"] += 1

    def _arrived(
        self,
        transport: asyncio.Transport,
        peername: object = None,
        data: bytes = b"",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Admit or refuse the client at ``peername`` (None: the transport's peer).

        ``data`` came after a PROXY header: the session gets it first.  On a
        ``tls://`` listener (``tls``) an admitted client's handshake comes next,
        starting with ``data`` (the ClientHello's first bytes).
        """
        if peername is None:
            peername = transport.get_extra_info("peername")
        denied = self.access.refusal(peer_address(peername))
        if denied is not None:  # not a byte to a client that may not connect
            log.warning("refused %s: %s", describe_peer(peername), denied)
            self.stats.refused["access"] += 1
            transport.close()
            return
        key = address_key(peername)
        address = None if peer_address(peername) is None else key
        refusal = self.verify_request(address)
        if refusal is not None:
            log.warning("refused %s: %s", describe_peer(peername), refusal)
            self.stats.refused["limit"] += 1
            if tls is None:  # a TLS client would read plain text as a broken handshake
                transport.write(self.service.refusal(refusal))
            transport.close()
            return
        try:
            session = self.service.new_session(self)
            if not isinstance(session, Session):
                raise TypeError(f"a session must be a Session, not {type(session).__name__}")
        except Exception:
            log.exception("%s could not start a session", self.service.name)
            transport.close()
            return
        self._sessions[session] = (address, transport)
        self.stats.accepted += 1
        if address is not None:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        self._all_gone.clear()
        if tls is not None:  # admitted: the handshake counts toward --max-conns
            self._handshake(transport, session, tls, peername, data)
            return
        log.info("connection from %s", describe_peer(peername))
        transport.set_protocol(session)
        session.connection_made(transport, peername)
        if data and not session.closing:
            feed(session, data)

    def _handshake(
        self,
        transport: asyncio.BaseTransport,
        session: Session,
        tls: ssl.SSLContext,
        peername: object,
        received: bytes,
    ) -> None:
        # Until the handshake task runs, the rest of the ClientHello must stay in the kernel.
        cast(asyncio.Transport, transport).pause_reading()
        peer = describe_peer(peername)
        timeout = self.config.tls.handshake_timeout if self.config.tls else 10.0
        handshake = accept_tls(
            transport,
            session,
            tls,
            timeout,
            on_failure=lambda: self.release(session),
            on_success=lambda: log.info("connection from %s (TLS)", peer),
            received=received,
            peername=peername,
        )
        self.spawn(handshake, name=f"TLS handshake with {peer}")

    # starting and stopping ----------------------------------------------------------

    async def start(self) -> list[Endpoint]:
        """Start the service, bind every endpoint and accept; return the bound endpoints."""
        loop = asyncio.get_running_loop()
        backlog = self.config.backlog or system_backlog()
        self._bound = list(self._inherited)
        try:
            await self._life.enter_async_context(self.service.running())
            for endpoint in self._endpoints:
                self._bound += bind_endpoint(endpoint, reuse_port=self.config.reuse_port)
            for bound in self._bound:
                if bound.requested.is_stream:
                    tls = self._tls_context() if bound.requested.tls else None
                    listener = await loop.create_server(
                        self._doorway(tls),
                        sock=bound.sock,
                        backlog=backlog,
                    )
                    self._listeners.append(listener)
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        self._datagram_endpoint, sock=bound.sock
                    )
                    self._datagram_transports.append(transport)
            if self.config.health is not None:
                from .health import HealthServer  # prometheus-client only when asked for

                self._health = HealthServer(self, self.config.health)
                await self._health.start()
        except BaseException:
            self._close_listeners()
            self._close_health()
            await self._life.aclose()
            raise
        if self.config.idle_timeout:
            sweep = IdleSweep(self.config.idle_timeout, self.config.min_rate)
            self._sweeper = loop.create_task(self._sweep_idle(sweep))
        return self.endpoints

    def _tls_context(self) -> ssl.SSLContext:
        if self.config.tls is None:
            raise ValueError("a tls:// endpoint needs ServerConfig.tls (a certificate and key)")
        return self.config.tls.context([alpn(self.service.name)])

    def _datagram_endpoint(self) -> DatagramEndpoint:
        limits = self.config.udp_limits
        core = self.service.datagram_core(limits) or HandlerDatagrams(self.service, limits)
        endpoint = DatagramEndpoint(
            core,
            clock=asyncio.get_running_loop().time,
            peer_sockets=self.service.peer_sockets,
            admit=self._admits_datagram,
        )
        self._datagram_endpoints.append(endpoint)
        return endpoint

    def _admits_datagram(self, addr: tuple[Any, ...]) -> bool:
        if self.access.admits(peer_address(addr)):
            return True
        self.stats.datagrams_refused += 1
        return False

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give sessions ``grace`` seconds to end, then close the rest."""
        grace = self.config.grace if grace is None else grace
        self._close_listeners()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
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
        await self._cancel_tasks()
        await self._life.aclose()
        self._close_health()

    def _close_health(self) -> None:
        if self._health is not None:
            self._health.close()
            self._health = None

    def cut_short(self) -> None:
        """End the grace period now (a second Ctrl-C)."""
        self._cut_short.set()

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

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

    async def _sweep_idle(self, sweep: IdleSweep) -> None:
        """Close sessions that sent no whole message (or moved too few bytes) for the timeout."""
        loop = asyncio.get_running_loop()
        reason = f"idle for {quantity(sweep.timeout, 'second')}"
        while True:
            await asyncio.sleep(sweep.interval)
            for session in sweep.sweep(list(self._sessions), loop.time()):
                session.abort(reason)

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

    SIGHUP reloads the access lists' files, when there are any
    (:meth:`Server.reload_access`).
    ``on_ready`` is called with the bound endpoints once the server accepts.
    A second signal during the grace period closes the remaining sessions at
    once.  However ``serve`` ends (a signal, ``stop``, an error, or its task
    being cancelled), the server is stopped before it returns.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            server.cut_short()
        stop.set()

    await server.start()
    graceful = False
    reload = server.config.access.reloadable and signal.SIGHUP not in signals
    try:
        for signum in signals:
            loop.add_signal_handler(signum, on_signal)
        if reload:
            loop.add_signal_handler(signal.SIGHUP, server.reload_access)
        if on_ready is not None:
            on_ready(server.endpoints)
        await stop.wait()
        graceful = True
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if reload:
            loop.remove_signal_handler(signal.SIGHUP)
        await server.stop(None if graceful else 0.0)
