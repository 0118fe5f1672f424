"""Run a sans-IO :class:`~socketeer.datagram.DatagramCore` on a UDP socket.

:class:`DatagramEndpoint` is the ``asyncio.DatagramProtocol`` for the bound
socket.  It hands every datagram to the core with the time, sends what the
core returns, and keeps one loop timer armed at the core's
:meth:`~socketeer.datagram.DatagramCore.get_timer`.

With ``peer_sockets`` each peer is answered from a socket of its own, as TFTP
does: a UDP socket on the same host, port 0, connected to the peer.  Its
datagrams (the peer sends the rest of its exchange to that port) reach the
core under the peer's address as if they had come to the bound socket; the
socket closes when the core forgets the peer.  At most ``max_peer_sockets``
are open at once; beyond that peers are answered from the bound socket.

``admit`` decides, for every datagram, whether its source may be heard at
all (``--allow``/``--deny``): a datagram it refuses is dropped without a
word, before the core sees it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from .datagram import Address, DatagramCore
from .endpoint import describe_peer

__all__ = ["DatagramEndpoint"]

log = logging.getLogger("socketeer.server")

#: The largest datagram read from a peer socket (a larger one is cut short).
MAX_RECEIVE = 65_536


class DatagramEndpoint(asyncio.DatagramProtocol):
    """The asyncio side of a datagram core: one bound UDP socket, and per-peer sockets if asked.

    ``clock`` gives the ``now`` passed to the core (the loop's clock by
    default).  While the kernel's send buffer is full, outgoing datagrams are
    dropped rather than queued: UDP may lose them anyway, and a flood must
    not grow the server's memory.  ``admit(addr)`` False drops a datagram
    from ``addr`` unread.  The endpoint counts the datagrams and bytes it
    takes and the bytes it sends.
    """

    def __init__(
        self,
        core: DatagramCore[Any],
        *,
        clock: Callable[[], float] | None = None,
        peer_sockets: bool = False,
        max_peer_sockets: int = 1024,
        admit: Callable[[Address], bool] | None = None,
    ) -> None:
        self.core = core
        self.transport: asyncio.DatagramTransport | None = None
        self._clock = clock
        self._peer_sockets = peer_sockets
        self._max_peer_sockets = max_peer_sockets
        self._sockets: dict[Address, socket.socket] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._admit = admit
        self.datagrams_received = 0
        self.bytes_received = 0
        self.bytes_sent = 0

    # asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._loop = loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        self._transmit()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._receive(data, addr, at_reply_port=addr not in self._sockets)
        self._transmit()
        self._prepare(self._now())

    def error_received(self, exc: Exception) -> None:
        log.debug("datagram error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        for addr in list(self._sockets):
            self._close_socket(addr)
        self.transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    @property
    def peer_socket_count(self) -> int:
        """How many per-peer sockets are open now."""
        return len(self._sockets)

    # Driving the core ------------------------------------------------------------------

    def _now(self) -> float:
        assert self._clock is not None
        return self._clock()

    def _receive(self, data: bytes, addr: Address, *, at_reply_port: bool) -> None:
        if self._admit is not None and not self._admit(addr):
            return
        self.datagrams_received += 1
        self.bytes_received += len(data)
        self.core.at_reply_port = at_reply_port
        try:
            self.core.receive_datagram(data, addr, self._now())
        except Exception:
            log.exception("datagram from %s failed", describe_peer(addr))

    def _transmit(self) -> None:
        """Send what the core has for sending, close forgotten peers' sockets, re-arm the timer."""
        if self.transport is None:
            return
        core = self.core
        for data, addr in core.datagrams_to_send(self._now()):
            if self._paused:
                log.debug("send buffer full: datagram to %s dropped", describe_peer(addr))
                continue
            sock = self._sockets.get(addr) if self._peer_sockets else None
            if self._peer_sockets and sock is None:
                sock = self._open_socket(addr)
            if sock is None:
                self.transport.sendto(data, addr)
            else:
                self._send_on(sock, data, addr)
            self.bytes_sent += len(data)
        for addr in core.forgotten():
            if not core.watch(addr):  # unless the peer came back in the same step
                self._close_socket(addr)
        self._arm_timer()

    def _prepare(self, now: float) -> None:
        """Let the core work ahead now that its replies are out; its timer may have moved."""
        if self.transport is None:
            return
        try:
            self.core.prepare(now)
        except Exception:
            log.exception("datagram core failed to prepare")
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Keep one timer armed no later than the core's; a timer that fires early is harmless."""
        when = self.core.get_timer()
        if when is None or (self._timer_at is not None and self._timer_at <= when):
            return
        self._cancel_timer()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_later(max(when - self._now(), 0.0), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        due = self._timer_at
        self._timer = None
        self._timer_at = None
        # The loop may run a timer a hair before its time on our clock.
        now = self._now() if due is None else max(self._now(), due)
        try:
            self.core.handle_timer(now)
        except Exception:
            log.exception("datagram timer failed")
        self._transmit()

    # Per-peer sockets ------------------------------------------------------------------

    def _open_socket(self, addr: Address) -> socket.socket | None:
        """A socket on our host, port 0, connected to ``addr``; None to use the bound socket."""
        assert self.transport is not None
        assert self._loop is not None
        if len(self._sockets) >= self._max_peer_sockets or not self.core.watch(addr):
            return None
        bound = cast(socket.socket, self.transport.get_extra_info("socket"))
        host, _, *rest = bound.getsockname()
        sock = socket.socket(bound.family, socket.SOCK_DGRAM)
        try:
            if bound.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, 0, *rest))
            sock.connect(addr)
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._readable, sock, addr)
        except OSError as exc:
            sock.close()
            log.warning("cannot open a socket for %s: %s", describe_peer(addr), exc)
            return None
        self._sockets[addr] = sock
        return sock

    def _send_on(self, sock: socket.socket, data: bytes, addr: Address) -> None:
        try:
            sock.send(data)
        except OSError as exc:  # a full buffer, or an error the peer's host sent back
            log.debug("datagram to %s not sent: %s", describe_peer(addr), exc)

    def _readable(self, sock: socket.socket, addr: Address) -> None:
        # One datagram a turn: the loop calls again while more wait, and an
        # empty socket costs no exception (a transfer in lock-step has one).
        try:
            data = sock.recv(MAX_RECEIVE)
        except OSError as exc:  # ICMP port unreachable and the like
            log.debug("datagram error from %s: %s", describe_peer(addr), exc)
            return
        core = self.core
        now = self._now()
        try:
            replies = core.quick_reply(data, addr, now)
        except Exception:
            log.exception("datagram from %s failed", describe_peer(addr))
            replies = []
        if replies is None:
            self._receive(data, addr, at_reply_port=True)
        else:
            for reply in replies:  # before anything else: the peer waits for them
                self._send_on(sock, reply, addr)
        self._transmit()
        self._prepare(now)
        try:
            take = core.hand_off(addr, now)
        except Exception:
            log.exception("datagram core failed to hand %s off", describe_peer(addr))
            return
        if take is not None:
            self._sockets.pop(addr, None)
            assert self._loop is not None
            self._loop.remove_reader(sock.fileno())
            take(sock, self._count)

    def _count(self, datagrams: int, received: int, sent: int) -> None:
        """Count what went over a socket handed to the core (see ``hand_off``)."""
        self.datagrams_received += datagrams
        self.bytes_received += received
        self.bytes_sent += sent

    def _close_socket(self, addr: Address) -> None:
        sock = self._sockets.pop(addr, None)
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()
