"""The TFTP server: a :class:`~socketeer.datagram.DatagramCore` serving a directory.

Each peer address has at most one transfer.  Files are read and written
through the files service's :class:`~socketeer.services.files.store.FileStore`,
so paths stay inside the directory, component by component; an upload is
written to a locked partial file and renamed over the target only when its
last block arrived.

No reflection: until a peer has answered (an ACK of the first DATA or OACK,
or the first DATA of an upload), it gets exactly one datagram for each
request datagram, and nothing on a timer.  Its answer validates it
(:meth:`~socketeer.datagram.DatagramCore.validate`); from then on the
transfer runs at its own pace, outside the per-address reply rate.  Only
an answer sent to the transfer's own port counts (see
:attr:`~socketeer.datagram.DatagramCore.at_reply_port`): that port number
reaches nobody but a receiver at the peer's address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ...datagram import Address, DatagramCore, DatagramLimits, HandOff, Peer
from ...endpoint import describe_peer
from ...visible import visible
from ..files.store import FileStore, StoreError, Upload
from .lockstep import STOPPED, LockstepThreads, step
from .packets import ACK, ErrorCode, ErrorPacket, Packet, PacketError, Request, parse
from .transfer import (
    READ_BUFFER,
    Abort,
    NetasciiDecoder,
    NetasciiReader,
    OptionError,
    Params,
    Receiver,
    Sender,
    Settings,
    Source,
    Transfer,
    negotiate,
)

__all__ = ["TftpPeer", "TftpServer"]

log = logging.getLogger("socketeer.server")

_STORE_CODES = {
    "not-found": ErrorCode.FILE_NOT_FOUND,
    "exists": ErrorCode.FILE_EXISTS,
    "no-space": ErrorCode.DISK_FULL,
}


def _store_error(exc: StoreError) -> ErrorPacket:
    return ErrorPacket(_STORE_CODES.get(exc.code, ErrorCode.ACCESS_VIOLATION), str(exc))


class TftpPeer(Peer):
    """One address's state: its transfer, and the file it reads or writes."""

    __slots__ = ("counted", "file", "request", "timer_at", "transfer", "upload")

    def __init__(self, addr: Address, limits: DatagramLimits, now: float) -> None:
        super().__init__(addr, limits, now)
        self.transfer: Transfer | None = None
        #: When this peer's entry in the server's timer heap is due (None: it has none).
        self.timer_at: float | None = None
        #: Whether the server counts this peer's transfer (until the peer is forgotten).
        self.counted = False
        self.request: Request | None = None
        self.file: BinaryIO | None = None
        self.upload: Upload | None = None


class TftpServer(DatagramCore[TftpPeer]):
    """Serves the directory ``root`` over TFTP (RRQ; WRQ with ``allow_upload``)."""

    def __init__(
        self,
        root: Path,
        *,
        allow_upload: bool = False,
        settings: Settings | None = None,
        limits: DatagramLimits | None = None,
    ) -> None:
        # The byte ratio does not fit TFTP (a 2-byte-name request asks for a 516-byte
        # block); one reply per request until validated bounds it instead.
        super().__init__(dataclasses.replace(limits or DatagramLimits(), amplification=None))
        self.store = FileStore(root)
        self.allow_upload = allow_upload
        self.settings = settings or Settings()
        # (due, order, peer): each running transfer's next check, soonest first.  An
        # entry is stale once the peer is gone or its timer_at names another time.
        self._timers: list[tuple[float, int, TftpPeer]] = []
        self._timer_order = itertools.count()
        # Senders that answered an ACK and may read their next window ahead.
        self._to_prepare: list[Sender] = []
        #: Transfers now, each until its peer is forgotten (refusals not counted).
        self.transfers = 0
        # Quick replies sent since the last prepare(), to be counted there.
        self._answered: list[tuple[TftpPeer, list[bytes]]] = []
        #: Lock-step downloads handed to threads of their own (see :meth:`hand_off`).
        self.threads = LockstepThreads(min(self.settings.threads, self.settings.max_transfers))
        # The addresses whose download runs on a thread: their requests are not new ones.
        self._threaded: set[Address] = set()

    def new_peer(self, addr: Address, now: float) -> TftpPeer:
        return TftpPeer(addr, self.limits, now)

    def _allowed(self, peer: TftpPeer, size: int, now: float) -> bool:
        """A validated peer's transfer is paced by its ACKs, not by the reply rate."""
        return peer.validated or super()._allowed(peer, size, now)

    # datagrams ---------------------------------------------------------------------

    def quick_reply(self, data: bytes, addr: Address, now: float) -> list[bytes] | None:
        """A running download's ACK, answered with the window it opens (built ahead).

        Anything else takes the usual way.  The exchange is counted in :meth:`prepare`.
        """
        if len(data) != 4 or data[1] != ACK or data[0] != 0:
            return None
        peer = self._peers.get(addr)
        if peer is None or not peer.validated or peer.last_seen + self.limits.idle <= now:
            return None
        transfer = peer.transfer
        if type(transfer) is not Sender:
            return None
        replies = step(transfer, transfer.ack, now, data[2] << 8 | data[3])
        self._answered.append((peer, replies))
        return replies

    def datagram_received(self, peer: TftpPeer, data: bytes, now: float) -> None:
        transfer = peer.transfer
        try:
            packet = parse(data)
        except PacketError as exc:
            if data[:2] in (b"\x00\x01", b"\x00\x02") and transfer is None:
                self._refuse(peer, ErrorPacket(ErrorCode.ILLEGAL_OPERATION, str(exc)), now)
            elif transfer is not None and peer.validated and self.at_reply_port:
                self._end(peer, transfer.abort(ErrorCode.ILLEGAL_OPERATION, str(exc)), now)
            return
        if isinstance(packet, Request):
            if transfer is None:
                if peer.addr not in self._threaded:  # else the request of the running download
                    self._start(peer, packet, now)
            elif packet == peer.request:
                self._send_all(peer, step(transfer, transfer.repeat, now), now)
            return
        if transfer is None or not self.at_reply_port:
            # A stray packet, or one sent to the server's port rather than the
            # transfer's: only a receiver of the transfer's replies knows that port.
            return
        replies = step(transfer, transfer.receive, now, packet)
        if transfer.heard and not peer.validated:
            self.validate(peer)
        self._send_all(peer, replies, now)
        self._went_on(peer, transfer, bool(replies), now)

    def _went_on(self, peer: TftpPeer, transfer: Transfer, answered: bool, now: float) -> None:
        """After a step of ``transfer``: settle it if over, else keep its timer, read ahead."""
        if transfer.outcome is not None:
            self._settle(peer, now)
            self._schedule(peer, now)  # forgotten, with its socket, at the next timer
            return
        due = transfer.deadline()
        if due is not None and (peer.timer_at is None or due < peer.timer_at):
            self._schedule(peer, due)
        if answered and type(transfer) is Sender:
            self._to_prepare.append(transfer)

    def prepare(self, now: float) -> None:
        """Count the quick replies sent, and let their senders read their next blocks."""
        answered, self._answered = self._answered, []
        for peer, replies in answered:
            self._heard(peer, 4, now)
            peer.sent += sum(map(len, replies))
            if peer.transfer is not None:
                self._went_on(peer, peer.transfer, bool(replies), now)
        senders, self._to_prepare = self._to_prepare, []
        for sender in senders:
            try:
                sender.prepare()
            except OSError:
                continue  # read again, and reported, when the block is due

    def hand_off(self, addr: Address, now: float) -> HandOff | None:
        """A validated lock-step download goes on on a thread of its own, if one is free."""
        peer = self._peers.get(addr)
        if peer is None or not peer.validated or not self.threads.room:
            return None
        transfer = peer.transfer
        if type(transfer) is not Sender or transfer.params.windowsize != 1 or transfer.finished:
            return None
        file, peer.file = peer.file, None
        peer.transfer = None
        peer.counted = False  # still counted in self.transfers, until the thread ends
        peer.watched = False  # its socket is the thread's now
        self.forget(peer)
        self._threaded.add(addr)

        def take(sock: Any, count: Callable[[int, int, int], None]) -> None:
            def done(addr: Address, outcome: str, datagrams: int, received: int, sent: int) -> None:
                count(datagrams, received, sent)
                self._thread_done(addr, outcome)

            self.threads.start(transfer, sock, file, addr, done)

        return take

    def _thread_done(self, addr: Address, outcome: str) -> None:
        """A download that ran on a thread has ended (on the event loop)."""
        self._threaded.discard(addr)
        self.transfers -= 1
        if outcome and outcome != STOPPED:
            log.info("tftp %s: transfer failed: %s", describe_peer(addr), visible(outcome))

    def _send_all(self, peer: TftpPeer, datagrams: list[bytes], now: float) -> None:
        for datagram in datagrams:
            self.send(peer, datagram, now)

    def _refuse(self, peer: TftpPeer, error: ErrorPacket, now: float) -> None:
        """Answer a request with ``error``; the peer is forgotten at the next timer."""
        log.info("tftp %s: refused: %s", describe_peer(peer.addr), visible(error.message))
        self.send(peer, error.encode(), now)
        peer.transfer = _Refused(now)
        self._schedule(peer, now)

    def _end(self, peer: TftpPeer, datagrams: list[bytes], now: float) -> None:
        self._send_all(peer, datagrams, now)
        self._settle(peer, now)

    # starting ----------------------------------------------------------------------

    def _start(self, peer: TftpPeer, request: Request, now: float) -> None:
        peer.request = request
        if self.transfers >= self.settings.max_transfers:
            busy = f"server busy: {self.transfers} transfers at once, try again later"
            self._refuse(peer, ErrorPacket(ErrorCode.NOT_DEFINED, busy), now)
            return
        try:
            transfer = (
                self._upload(peer, request, now)
                if request.write
                else self._read(peer, request, now)
            )
        except StoreError as exc:
            self._refuse(peer, _store_error(exc), now)
            return
        except OptionError as exc:
            self._refuse(peer, ErrorPacket(ErrorCode.OPTION_REFUSED, str(exc)), now)
            return
        except Abort as exc:
            self._refuse(peer, ErrorPacket(exc.code, exc.message), now)
            return
        peer.transfer = transfer
        peer.counted = True
        self.transfers += 1
        what = "upload" if request.write else "download"
        log.info(
            "tftp %s: %s %r (%s)",
            describe_peer(peer.addr),
            what,
            visible(request.filename),
            request.mode,
        )
        self._send_all(peer, step(transfer, transfer.start, now), now)
        self._schedule(peer, transfer.deadline() or now)

    def _read(self, peer: TftpPeer, request: Request, now: float) -> Transfer:
        file, st = self.store.open_file(request.filename, READ_BUFFER)
        try:
            octet = request.mode == "octet"
            params, oack = negotiate(request.options, self.settings, st.st_size if octet else None)
        except BaseException:
            file.close()
            raise
        peer.file = file
        source: Source = file if octet else NetasciiReader(file)
        return Sender(source, params, oack, now)

    def _upload(self, peer: TftpPeer, request: Request, now: float) -> Transfer:
        if not self.allow_upload:
            raise Abort(ErrorCode.ACCESS_VIOLATION, "uploads are not allowed on this server")
        params, oack = negotiate(request.options, self.settings, None)
        try:
            self.store.stat(request.filename)
        except StoreError as exc:
            if exc.code != "not-found":
                raise
        else:
            raise Abort(ErrorCode.FILE_EXISTS, f"{request.filename}: already exists")
        # The size is known only at the end; an old partial is started over.
        upload = self.store.upload(request.filename, 0, None, False, True)
        assert upload is not None
        upload.keep_existing = True  # a file made at the name meanwhile stays
        peer.upload = upload
        decoder = NetasciiDecoder() if request.mode == "netascii" else None

        def sink(payload: bytes, last: bool) -> None:
            chunks = [decoder.feed(payload)] if decoder is not None else [payload]
            if last and decoder is not None:
                chunks.append(decoder.end())
            try:
                upload.write_all(list(chunks))
                if last:
                    upload.file.flush()
                    upload.size = upload.file.tell()
                    upload.finish(None)
                    peer.upload = None
                    log.info(
                        "tftp %s: received %r (%d bytes)",
                        describe_peer(peer.addr),
                        visible(upload.remote),
                        upload.size,
                    )
            except StoreError as exc:
                error = _store_error(exc)
                raise Abort(error.code, error.message) from None

        return Receiver(sink, params, oack, now)

    # timers and endings ---------------------------------------------------------------

    def _schedule(self, peer: TftpPeer, due: float) -> None:
        """Check ``peer``'s transfer at ``due`` (its deadline, or now to forget it)."""
        peer.timer_at = due
        heapq.heappush(self._timers, (due, next(self._timer_order), peer))

    def get_timer(self) -> float | None:
        when = super().get_timer()
        timers = self._timers
        if timers and (when is None or timers[0][0] < when):
            return timers[0][0]
        return when

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, peer = heapq.heappop(timers)
            transfer = peer.transfer
            if peer.timer_at != due or transfer is None or self.peer(peer.addr) is not peer:
                continue  # stale: rescheduled, or forgotten
            peer.timer_at = None
            self._send_all(peer, step(transfer, transfer.handle_timer, now), now)
            self._settle(peer, now, forget=True)
            if self.peer(peer.addr) is peer:
                self._schedule(peer, transfer.deadline() or now)

    def _settle(self, peer: TftpPeer, now: float, *, forget: bool = False) -> None:
        """Log a finished transfer; with ``forget``, drop the peer (and its socket)."""
        transfer = peer.transfer
        if transfer is None or not transfer.finished:
            return
        if transfer.outcome and not isinstance(transfer, _Refused):
            log.info(
                "tftp %s: transfer failed: %s", describe_peer(peer.addr), visible(transfer.outcome)
            )
        self._close(peer)
        if forget:
            self.forget(peer)

    def _close(self, peer: TftpPeer) -> None:
        if peer.file is not None:
            peer.file.close()
            peer.file = None
        if peer.upload is not None:
            with contextlib.suppress(OSError):
                peer.upload.abandon()
            peer.upload = None

    def peer_forgotten(self, peer: TftpPeer) -> None:
        self._close(peer)
        if peer.counted:
            peer.counted = False
            self.transfers -= 1

    def close(self) -> None:
        """Stop every transfer and let go of the directory."""
        for peer in list(self._peers.values()):
            self.forget(peer)
        self.threads.stop()
        self.store.close()


class _Refused(Transfer):
    """A request answered with an ERROR: the peer is forgotten at the next timer."""

    def __init__(self, now: float) -> None:
        super().__init__(Params(), {}, now)
        self.outcome = "refused"

    def start(self, now: float) -> list[bytes]:
        return []

    def _received(self, packet: Packet, now: float) -> list[bytes]:
        return []

    def _retransmit(self) -> list[bytes]:
        return []
