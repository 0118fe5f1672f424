"""Datagram protocols as sans-IO cores, and the limits that keep UDP from being a reflector.

A :class:`DatagramCore` is shaped like aioquic's ``QuicConnection``: the I/O
layer hands it what arrived (:meth:`~DatagramCore.receive_datagram`), asks it
what to send (:meth:`~DatagramCore.datagrams_to_send`), and arms one timer
from :meth:`~DatagramCore.get_timer`, calling
:meth:`~DatagramCore.handle_timer` when it fires.  Time is always passed in.
The core keeps a :class:`Peer` per remote address, in a table of bounded size
(the least recently heard-from address is dropped first) where an address
quiet for ``idle`` seconds is forgotten.

Every datagram a core sends goes through the :class:`DatagramLimits`:

- **amplification**: until a peer has proven it owns its address (see
  :meth:`DatagramCore.validate`), the bytes sent to it never exceed
  ``amplification`` (3) times the bytes received from it, counted since the
  address was last forgotten.  A spoofed request can thus never buy more than
  three bytes at the victim for each byte the attacker sends.
- **rate**: a token bucket per address (``rate`` replies a second, bursts of
  ``burst``) caps what any one address receives, and a global bucket
  (``total_rate``, ``total_burst``) caps what all addresses together receive,
  however many source addresses an attacker spoofs.

Sending from a request alone proves nothing: a spoofer can send any pattern of
datagrams, over any length of time.  Only a peer that returns something
unpredictable the server sent to its address (a cookie, as QUIC's Retry token
and DTLS's HelloVerifyRequest) has shown it receives there; a core whose
protocol has such an exchange calls :meth:`~DatagramCore.validate` afterwards.
:class:`HandlerDatagrams` (greet, echo) has none, so the amplification limit
always applies to it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .endpoint import describe_peer
from .ratelimit import TokenBucket
from .service import Service

__all__ = [
    "MAX_DATAGRAM",
    "NO_LIMITS",
    "Address",
    "DatagramCore",
    "DatagramLimits",
    "HandOff",
    "HandlerDatagrams",
    "Peer",
]

log = logging.getLogger("socketeer.server")

#: The largest UDP payload over IPv4: 65,535 - 8 (UDP header) - 20 (IP header).
MAX_DATAGRAM = 65_507

#: A remote address as the socket layer gives it: ``(host, port)``, or a
#: 4-tuple for IPv6.  Only equality and hashing are used here.
Address = tuple[Any, ...]

#: What a core returns to take a peer's exchange over (see :meth:`DatagramCore.hand_off`):
#: called with the peer's connected socket and a function to be called later, on the
#: event loop, with the datagrams and bytes received and the bytes sent over it.
HandOff = Callable[[Any, Callable[[int, int, int], None]], None]

# At most this many throttle warnings a second (bursts of WARNING_BURST): a
# flood from spoofed sources must not become a flood of log lines.
WARNING_RATE = 1.0
WARNING_BURST = 20


@dataclass(frozen=True)
class DatagramLimits:
    """How much a core may send, and how much it remembers.

    ``rate`` and ``total_rate`` are replies a second (0 turns that bucket
    off); ``amplification`` None turns the byte limit off.  ``max_peers``
    bounds the per-address table; ``idle`` is how long an address stays
    remembered (with its counts) after the last datagram from it.
    """

    rate: float = 20.0
    burst: int = 40
    total_rate: float = 2_000.0
    total_burst: int = 4_000
    amplification: float | None = 3.0
    max_peers: int = 10_000
    idle: float = 30.0

    def __post_init__(self) -> None:
        if self.rate < 0 or self.total_rate < 0:
            raise ValueError("rates must be >= 0")
        if self.burst < 1 or self.total_burst < 1:
            raise ValueError("bursts must be >= 1")
        if self.amplification is not None and self.amplification < 1:
            raise ValueError("amplification must be >= 1")
        if self.max_peers < 1:
            raise ValueError("max_peers must be >= 1")
        if self.idle <= 0:
            raise ValueError("idle must be > 0")


#: Limits for a core that must not be limited (a client talking to the
#: server it chose, a test protocol): no rate, no amplification limit.
NO_LIMITS = DatagramLimits(rate=0, total_rate=0, amplification=None)


class Peer:
    """What a core knows about one remote address while it is remembered.

    ``received`` and ``sent`` count bytes since the address was first heard
    from (or last forgotten).  Cores keep their own per-peer state in a
    subclass.
    """

    __slots__ = (
        "addr",
        "bucket",
        "last_seen",
        "received",
        "sent",
        "validated",
        "watched",
        "withheld",
    )

    def __init__(self, addr: Address, limits: DatagramLimits, now: float) -> None:
        self.addr = addr
        self.received = 0
        self.sent = 0
        self.last_seen = now
        #: The peer proved it owns its address: no amplification limit.
        self.validated = False
        #: Datagrams not sent to this address because of its own limits.
        self.withheld = 0
        self.bucket = TokenBucket(limits.rate, limits.burst, now)
        #: Whether the I/O layer wants to hear when this state is dropped.
        self.watched = False


PeerT = TypeVar("PeerT", bound=Peer)


class DatagramCore(ABC, Generic[PeerT]):
    """The sans-IO base of a datagram protocol: per-peer state, limits, timers.

    Subclasses make their per-peer state in :meth:`new_peer`, react to
    datagrams in :meth:`datagram_received`, queue datagrams with :meth:`send`,
    and, if they keep timers, override :meth:`get_timer` and
    :meth:`handle_timer` (calling the base versions, which forget idle
    peers).  After each call into the core the I/O layer calls
    :meth:`datagrams_to_send` and re-arms its timer from :meth:`get_timer`.
    """

    def __init__(self, limits: DatagramLimits | None = None) -> None:
        self.limits = limits or DatagramLimits()
        #: Whether the datagram being handled arrived at the port the replies to its
        #: sender leave from (the I/O layer sets it; a peer socket's port is known only
        #: to a receiver of those replies).
        self.at_reply_port = True
        # Least recently heard from first.
        self._peers: OrderedDict[Address, PeerT] = OrderedDict()
        self._outgoing: list[tuple[bytes, Address]] = []
        self._forgotten: list[Address] = []
        self._total: TokenBucket | None = None
        self._total_warned_at: float | None = None
        # Throttle warnings are themselves rate limited: spoofed sources are free.
        self._warnings: TokenBucket | None = None
        self._unlogged = 0

    # What subclasses provide ---------------------------------------------------------

    @abstractmethod
    def new_peer(self, addr: Address, now: float) -> PeerT:
        """Return the state for an address heard from (or connected to) for the first time."""

    @abstractmethod
    def datagram_received(self, peer: PeerT, data: bytes, now: float) -> None:
        """Handle one datagram from ``peer``; queue answers with :meth:`send`."""

    def peer_forgotten(self, peer: PeerT) -> None:
        """``peer``'s state is being dropped (idle, evicted or :meth:`forget`); none by default."""

    # The I/O layer's side --------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Take one datagram that arrived from ``addr`` at ``now``."""
        self._expire(now)
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._remember(addr, now)
        else:
            self._peers.move_to_end(addr)
        peer.last_seen = now
        peer.received += len(data)
        self.datagram_received(peer, data, now)

    def quick_reply(self, data: bytes, addr: Address, now: float) -> list[bytes] | None:
        """The replies to ``data`` from ``addr``, if the core has them at hand; else None.

        A shortcut for a datagram that arrived at the reply port of a peer the
        core knows (a per-peer socket): instead of :meth:`receive_datagram`,
        the I/O layer calls this and sends what it returns to ``addr`` at
        once, unqueued and past the limits (the core returns only what they
        allow), then calls :meth:`prepare`, where the core counts the exchange.
        None (the default) means: take the usual way, nothing was done.
        """
        return None

    def hand_off(self, addr: Address, now: float) -> HandOff | None:
        """Whether the core now runs ``addr``'s exchange itself, off the I/O layer.

        Asked after each datagram that arrived at the reply port of a peer the
        core knows (a per-peer socket).  None (the default): the I/O layer goes
        on as before.  Otherwise the core has dropped the peer from its table
        without reporting it in :meth:`forgotten`; the I/O layer stops reading
        the peer's socket, forgets it, and calls the :data:`HandOff` returned
        with it, which owns (and closes) it from then on.
        """
        return None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Return (and forget) the ``(data, addr)`` pairs queued since the last call."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called, or None for never."""
        for peer in self._peers.values():
            return peer.last_seen + self.limits.idle
        return None

    def handle_timer(self, now: float) -> None:
        """Do what is due at ``now``; calling it early or twice does no harm."""
        self._expire(now)

    def prepare(self, now: float) -> None:
        """Do work that can wait until the replies are sent (reading ahead); none by default.

        The I/O layer calls it after sending what a datagram caused, so that
        the next answer is ready while the peer is busy with this one; it then
        re-arms its timer from :meth:`get_timer`.  Nothing is queued for sending here.
        """

    def watch(self, addr: Address) -> bool:
        """Report ``addr`` in :meth:`forgotten` once its state is dropped; False if unknown."""
        peer = self._peers.get(addr)
        if peer is not None:
            peer.watched = True
        return peer is not None

    def forgotten(self) -> list[Address]:
        """Return (and clear) the watched addresses whose state was dropped since the last call."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    # For subclasses --------------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        """How many addresses are remembered now."""
        return len(self._peers)

    def peer(self, addr: Address) -> PeerT | None:
        """The state kept for ``addr``, if any."""
        return self._peers.get(addr)

    def connect(self, addr: Address, now: float) -> PeerT:
        """Start talking to ``addr`` first: it is validated, since this side chose it."""
        peer = self._peers.get(addr) or self._remember(addr, now)
        peer.validated = True
        return peer

    def validate(self, peer: PeerT) -> None:
        """``peer`` returned something only a receiver at its address could know."""
        peer.validated = True

    def send(self, peer: PeerT, data: bytes, now: float) -> bool:
        """Queue ``data`` for ``peer`` if the limits allow it; say whether they did."""
        if len(data) > MAX_DATAGRAM:
            log.warning("reply to %s too large for a datagram; dropped", describe_peer(peer.addr))
            return False
        if not self._allowed(peer, len(data), now):
            return False
        peer.sent += len(data)
        self._outgoing.append((data, peer.addr))
        return True

    def forget(self, peer: PeerT) -> None:
        """Drop ``peer``'s state now (its transfer is over)."""
        if self._peers.get(peer.addr) is peer:
            del self._peers[peer.addr]
            self._dropped(peer)

    # Inside --------------------------------------------------------------------------

    def _heard(self, peer: PeerT, size: int, now: float) -> None:
        """Count a datagram of ``size`` bytes from a remembered ``peer``, as receiving does."""
        self._expire(now)
        if self._peers.get(peer.addr) is peer:
            self._peers.move_to_end(peer.addr)
            peer.last_seen = now
            peer.received += size

    def _remember(self, addr: Address, now: float) -> PeerT:
        if len(self._peers) >= self.limits.max_peers:
            _, oldest = self._peers.popitem(last=False)
            self._dropped(oldest)
        peer = self._peers[addr] = self.new_peer(addr, now)
        return peer

    def _expire(self, now: float) -> None:
        idle = self.limits.idle
        peers = self._peers
        while peers:
            oldest = next(iter(peers.values()))
            if oldest.last_seen + idle > now:  # the same sum get_timer() gives, to the bit
                return
            del peers[oldest.addr]
            self._dropped(oldest)

    def _dropped(self, peer: PeerT) -> None:
        if peer.withheld:
            log.debug(
                "stopped throttling %s: %d replies withheld",
                describe_peer(peer.addr),
                peer.withheld,
            )
        if peer.watched:
            self._forgotten.append(peer.addr)
        self.peer_forgotten(peer)

    def _allowed(self, peer: PeerT, size: int, now: float) -> bool:
        limits = self.limits
        factor = limits.amplification
        if factor is not None and not peer.validated and peer.sent + size > factor * peer.received:
            return self._withhold(peer, f"replies would pass {factor:g}x the bytes it sent", now)
        if not peer.bucket.allow(now):
            reason = f"over {limits.rate:g} replies a second (bursts of {limits.burst})"
            return self._withhold(peer, reason, now)
        total = self._total
        if total is None:
            total = self._total = TokenBucket(limits.total_rate, limits.total_burst, now)
        if total.allow(now):
            return True
        warned = self._total_warned_at
        if warned is None or now - warned >= limits.idle:
            self._total_warned_at = now
            log.warning(
                "throttling all datagram replies: over %g a second (bursts of %d)",
                limits.total_rate,
                limits.total_burst,
            )
        return False

    def _withhold(self, peer: PeerT, reason: str, now: float) -> bool:
        """Count a datagram ``peer`` does not get; warn the first time, if warnings allow."""
        peer.withheld += 1
        if peer.withheld > 1:
            return False
        warnings = self._warnings
        if warnings is None:
            warnings = self._warnings = TokenBucket(WARNING_RATE, WARNING_BURST, now)
        if not warnings.allow(now):
            self._unlogged += 1
            return False
        unlogged = (
            f" ({self._unlogged} more addresses throttled, not logged)" if self._unlogged else ""
        )
        self._unlogged = 0
        log.warning("throttling %s: %s%s", describe_peer(peer.addr), reason, unlogged)
        return False


class HandlerDatagrams(DatagramCore[Peer]):
    """Request/reply over datagrams: each datagram is one message for a fresh handler.

    The handler's replies go back to the sender, within the limits.  A reply
    larger than :data:`MAX_DATAGRAM` is dropped with a warning; a handler that
    fails is logged and its datagram dropped.  There is no greeting.
    """

    def __init__(self, service: Service, limits: DatagramLimits | None = None) -> None:
        super().__init__(limits)
        self.service = service

    def new_peer(self, addr: Address, now: float) -> Peer:
        return Peer(addr, self.limits, now)

    def datagram_received(self, peer: Peer, data: bytes, now: float) -> None:
        try:
            replies = self.service.new_handler().received(data)
        except Exception:
            log.exception("datagram from %s failed", describe_peer(peer.addr))
            return
        for reply in replies:
            self.send(peer, reply, now)
