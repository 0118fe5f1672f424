"""TFTP clients for one transfer each, sans-IO: :class:`~socketeer.datagram.DatagramCore` s.

A client sends its request to the server's port; the first answer comes from
the transfer's port (its TID), and from then on only that address is heard.
Before an answer, the request is sent again after ``timeout`` seconds, the
wait doubling after each try up to 8 times ``timeout``, ``retries`` times.
:class:`TftpDownload` reads a file (RRQ), :class:`TftpUpload` writes one (WRQ).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

from ...datagram import NO_LIMITS, Address, DatagramCore, Peer
from .packets import (
    MAX_BLKSIZE,
    MIN_BLKSIZE,
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OAck,
    Packet,
    PacketError,
    Request,
    parse,
)
from .transfer import MAX_BACKOFF, NetasciiDecoder, Params, Receiver, Sender, Source, Transfer

__all__ = ["TftpDownload", "TftpUpload"]


class _TftpClient(DatagramCore[Peer]):
    """What a download and an upload share: the request, the server's TID, options, timers.

    ``outcome`` is None while running, "" once the transfer is complete, else
    why it failed.
    """

    def __init__(
        self,
        server: Address,
        request: Request,
        now: float,
        *,
        timeout: float,
        retries: int,
    ) -> None:
        super().__init__(NO_LIMITS)
        self.request = request
        self.server = server
        self.timeout = timeout
        self.retries = retries
        #: None while running; "" once complete, else why it failed.
        self.outcome: str | None = None
        #: The size the server announced (tsize), if it did.
        self.size: int | None = None
        self._tid: Address | None = None
        self._transfer: Transfer | None = None
        self._tries = 0
        self._resend_at: float | None = now + timeout
        self.send(self.connect(server, now), request.encode(), now)

    def new_peer(self, addr: Address, now: float) -> Peer:
        return Peer(addr, self.limits, now)

    @property
    def finished(self) -> bool:
        """Whether the transfer is over (complete or failed)."""
        return self.outcome is not None

    def datagram_received(self, peer: Peer, data: bytes, now: float) -> None:
        if self.finished or peer.addr[0] != self.server[0]:
            return
        if self._tid is None:
            self._tid = peer.addr
            self._resend_at = None
        elif peer.addr != self._tid:
            return  # another transfer's packet
        try:
            packet = parse(data)
        except PacketError:
            return
        if isinstance(packet, ErrorPacket):
            self.outcome = f"error {packet.code}: {packet.message}"
            return
        if isinstance(packet, OAck) and self._transfer is not None:
            return  # a repeated OACK: the transfer's timer resends what is missing
        if self._transfer is None:
            options = packet.options if isinstance(packet, OAck) else {}
            try:
                params = self._params(options)
            except ValueError as exc:
                self._out(peer, [ErrorPacket(ErrorCode.OPTION_REFUSED, str(exc)).encode()], now)
                self.outcome = f"the server's options were refused: {exc}"
                return
            transfer = self._transfer = self._begin(params, packet, now)
            transfer.heard = True  # the server answered: retransmit on the timer
            self._out(peer, self._first(transfer, packet, now), now)
        else:
            self._out(peer, self._transfer.receive(packet, now), now)
        self._check()

    @abstractmethod
    def _begin(self, params: Params, packet: Packet, now: float) -> Transfer:
        """The transfer, once the server's first answer ``packet`` gave its ``params``."""

    @abstractmethod
    def _first(self, transfer: Transfer, packet: Packet, now: float) -> list[bytes]:
        """What answers the server's first answer ``packet``."""

    def _params(self, options: dict[str, str]) -> Params:
        """The transfer's parameters from the OACK; an option not asked for is refused."""
        asked = self.request.options
        for name, value in options.items():
            if name not in asked:
                raise ValueError(f"{name} was not asked for")
            if not value.isascii() or not value.isdigit():
                raise ValueError(f"{name}: {value[:20]!r} is not a number")
        blksize = int(options.get("blksize", 512))
        if not MIN_BLKSIZE <= blksize <= min(MAX_BLKSIZE, int(asked.get("blksize", blksize))):
            raise ValueError(f"blksize {blksize} is out of range")
        window = int(options.get("windowsize", 1))
        if not 1 <= window <= int(asked.get("windowsize", 1)):
            raise ValueError(f"windowsize {window} is out of range")
        if "tsize" in options:
            self.size = int(options["tsize"])
        timeout = float(options.get("timeout", self.timeout))
        return Params(blksize, timeout or self.timeout, window, self.retries)

    def _out(self, peer: Peer, datagrams: list[bytes], now: float) -> None:
        for datagram in datagrams:
            self.send(peer, datagram, now)

    @abstractmethod
    def _done(self, transfer: Transfer) -> bool:
        """Whether ``transfer`` got everything across."""

    def _check(self) -> None:
        transfer = self._transfer
        if transfer is None:
            return
        if self._done(transfer):
            self.outcome = ""
        elif transfer.outcome:
            self.outcome = transfer.outcome

    def get_timer(self) -> float | None:
        if self.finished:
            return None
        if self._transfer is not None:
            return self._transfer.deadline()
        return self._resend_at

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        if self._transfer is not None:
            assert self._tid is not None
            peer = self.peer(self._tid)
            datagrams = self._transfer.handle_timer(now)
            if peer is not None:
                self._out(peer, datagrams, now)
            self._check()
            return
        if self._resend_at is None or now < self._resend_at:
            return
        self._tries += 1
        if self._tries > self.retries:
            self.outcome = f"no answer from the server after {self.retries} retries"
            return
        self._resend_at = now + self.timeout * min(2**self._tries, MAX_BACKOFF)
        server = self.peer(self.server) or self.connect(self.server, now)
        self.send(server, self.request.encode(), now)


class TftpDownload(_TftpClient):
    """Reads ``filename`` from ``server`` into ``sink`` (called with each block and a last flag).

    In netascii mode the sink gets local text (LF line ends).  ``options``
    are asked for (blksize, windowsize, tsize...); the server's OACK says
    which apply.
    """

    def __init__(
        self,
        server: Address,
        filename: str,
        sink: Callable[[bytes, bool], None],
        now: float,
        *,
        mode: str = "octet",
        options: dict[str, str] | None = None,
        timeout: float = 1.0,
        retries: int = 5,
    ) -> None:
        self.sink = sink
        if mode == "netascii":
            decoder = NetasciiDecoder()

            def local_text(payload: bytes, last: bool) -> None:
                sink(decoder.feed(payload) + (decoder.end() if last else b""), last)

            self.sink = local_text
        request = Request(False, filename, mode, dict(options or {}))
        super().__init__(server, request, now, timeout=timeout, retries=retries)

    def _begin(self, params: Params, packet: Packet, now: float) -> Transfer:
        return Receiver(self.sink, params, {}, now)

    def _first(self, transfer: Transfer, packet: Packet, now: float) -> list[bytes]:
        if isinstance(packet, OAck):
            return [Ack(0).encode()]
        return transfer.receive(packet, now) if isinstance(packet, Data) else []

    def _done(self, transfer: Transfer) -> bool:
        return isinstance(transfer, Receiver) and transfer.complete


class TftpUpload(_TftpClient):
    """Writes ``source`` to ``server`` as ``filename`` (octet mode).

    ``options`` are asked for (blksize, windowsize, tsize...); the server's
    OACK (or its ACK 0, from a server without options) starts the blocks.
    ``sent`` counts the bytes the server has acknowledged.
    """

    def __init__(
        self,
        server: Address,
        filename: str,
        source: Source,
        now: float,
        *,
        options: dict[str, str] | None = None,
        timeout: float = 1.0,
        retries: int = 5,
    ) -> None:
        self.source = source
        request = Request(True, filename, "octet", dict(options or {}))
        super().__init__(server, request, now, timeout=timeout, retries=retries)

    @property
    def sent(self) -> int:
        """The bytes the server has acknowledged so far."""
        transfer = self._transfer
        return transfer.acked_bytes if isinstance(transfer, Sender) else 0

    def _begin(self, params: Params, packet: Packet, now: float) -> Transfer:
        return Sender(self.source, params, {}, now)

    def _first(self, transfer: Transfer, packet: Packet, now: float) -> list[bytes]:
        if isinstance(packet, OAck) or (isinstance(packet, Ack) and packet.block == 0):
            return transfer.start(now)
        self._transfer = None  # not an answer to a write request: wait for one
        return []

    def _done(self, transfer: Transfer) -> bool:
        return transfer.outcome == ""

    def prepare(self, now: float) -> None:
        transfer = self._transfer
        if isinstance(transfer, Sender):
            transfer.prepare()
