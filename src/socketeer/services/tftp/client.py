"""A TFTP client for one download, sans-IO: a :class:`~socketeer.datagram.DatagramCore`.

The client sends its read request to the server's port; the first answer
comes from the transfer's port (its TID), and from then on only that address
is heard.  Before an answer, the request is sent again after ``timeout``
seconds, the wait doubling after each try up to 8 times ``timeout``,
``retries`` times.
"""

from __future__ import annotations

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
    PacketError,
    Request,
    parse,
)
from .transfer import MAX_BACKOFF, NetasciiDecoder, Params, Receiver

__all__ = ["TftpDownload"]


class TftpDownload(DatagramCore[Peer]):
    """Reads ``filename`` from ``server`` into ``sink`` (called with each block and a last flag).

    In netascii mode the sink gets local text (LF line ends).

    ``options`` are asked for (blksize, windowsize, tsize...); the server's
    OACK says which apply.  ``outcome`` is None while running, "" once
    every block arrived, else why the download failed.
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
        super().__init__(NO_LIMITS)
        self.request = Request(False, filename, mode, dict(options or {}))
        self.server = server
        self.sink = sink
        if mode == "netascii":
            decoder = NetasciiDecoder()

            def local_text(payload: bytes, last: bool) -> None:
                sink(decoder.feed(payload) + (decoder.end() if last else b""), last)

            self.sink = local_text
        self.timeout = timeout
        self.retries = retries
        #: None while running; "" once every block arrived, else why it failed.
        self.outcome: str | None = None
        #: The size the server announced (tsize), if it did.
        self.size: int | None = None
        self._tid: Address | None = None
        self._receiver: Receiver | None = None
        self._tries = 0
        self._resend_at: float | None = now + timeout
        self.send(self.connect(server, now), self.request.encode(), now)

    def new_peer(self, addr: Address, now: float) -> Peer:
        return Peer(addr, self.limits, now)

    @property
    def finished(self) -> bool:
        """Whether the download is over (complete or failed)."""
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
        if isinstance(packet, OAck) and self._receiver is not None:
            return  # a repeated OACK: the receiver's timer resends ACK 0 if need be
        if self._receiver is None:
            self._begin(peer, packet, now)
            if self._receiver is None or not isinstance(packet, Data):
                return
        self._out(peer, self._receiver.receive(packet, now), now)
        self._check()

    def _begin(self, peer: Peer, packet: object, now: float) -> None:
        options = packet.options if isinstance(packet, OAck) else {}
        try:
            params = self._params(options)
        except ValueError as exc:
            self._out(peer, [ErrorPacket(ErrorCode.OPTION_REFUSED, str(exc)).encode()], now)
            self.outcome = f"the server's options were refused: {exc}"
            return
        receiver = self._receiver = Receiver(self.sink, params, {}, now)
        receiver.heard = True  # the server answered: retransmit on the timer
        if isinstance(packet, OAck):
            self._out(peer, [Ack(0).encode()], now)

    def _params(self, options: dict[str, str]) -> Params:
        """The transfer's parameters from the OACK; an option not asked for is refused."""
        for name, value in options.items():
            if name not in self.request.options:
                raise ValueError(f"{name} was not asked for")
            if not value.isascii() or not value.isdigit():
                raise ValueError(f"{name}: {value[:20]!r} is not a number")
        blksize = int(options.get("blksize", 512))
        if (
            not MIN_BLKSIZE
            <= blksize
            <= min(MAX_BLKSIZE, int(self.request.options.get("blksize", blksize)))
        ):
            raise ValueError(f"blksize {blksize} is out of range")
        window = int(options.get("windowsize", 1))
        if not 1 <= window <= int(self.request.options.get("windowsize", 1)):
            raise ValueError(f"windowsize {window} is out of range")
        if "tsize" in options:
            self.size = int(options["tsize"])
        timeout = float(options.get("timeout", self.timeout))
        return Params(blksize, timeout or self.timeout, window, self.retries)

    def _out(self, peer: Peer, datagrams: list[bytes], now: float) -> None:
        for datagram in datagrams:
            self.send(peer, datagram, now)

    def _check(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        if receiver.complete:
            self.outcome = ""
        elif receiver.outcome:
            self.outcome = receiver.outcome

    def get_timer(self) -> float | None:
        if self.finished:
            return None
        if self._receiver is not None:
            return self._receiver.deadline()
        return self._resend_at

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        if self._receiver is not None:
            assert self._tid is not None
            peer = self.peer(self._tid)
            datagrams = self._receiver.handle_timer(now)
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
