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
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ...datagram import Address, DatagramCore, DatagramLimits, Peer
from ...endpoint import describe_peer
from ...visible import visible
from ..files.store import FileStore, StoreError, Upload
from .packets import ErrorCode, ErrorPacket, Packet, PacketError, Request, parse
from .transfer import (
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

    __slots__ = ("file", "request", "transfer", "upload")

    def __init__(self, addr: Address, limits: DatagramLimits, now: float) -> None:
        super().__init__(addr, limits, now)
        self.transfer: Transfer | None = None
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

    def new_peer(self, addr: Address, now: float) -> TftpPeer:
        return TftpPeer(addr, self.limits, now)

    def _allowed(self, peer: TftpPeer, size: int, now: float) -> bool:
        """A validated peer's transfer is paced by its ACKs, not by the reply rate."""
        return peer.validated or super()._allowed(peer, size, now)

    # datagrams ---------------------------------------------------------------------

    def datagram_received(self, peer: TftpPeer, data: bytes, now: float) -> None:
        try:
            packet = parse(data)
        except PacketError as exc:
            if data[:2] in (b"\x00\x01", b"\x00\x02") and peer.transfer is None:
                self._refuse(peer, ErrorPacket(ErrorCode.ILLEGAL_OPERATION, str(exc)), now)
            elif peer.transfer is not None and peer.validated and self.at_reply_port:
                self._end(peer, peer.transfer.abort(ErrorCode.ILLEGAL_OPERATION, str(exc)), now)
            return
        transfer = peer.transfer
        if isinstance(packet, Request):
            if transfer is None:
                self._start(peer, packet, now)
            elif packet == peer.request:
                self._send_all(peer, self._step(transfer, transfer.repeat, now), now)
            return
        if transfer is None or not self.at_reply_port:
            # A stray packet, or one sent to the server's port rather than the
            # transfer's: only a receiver of the transfer's replies knows that port.
            return
        replies = self._step(transfer, functools.partial(transfer.receive, packet), now)
        if transfer.heard and not peer.validated:
            self.validate(peer)
        self._send_all(peer, replies, now)
        self._settle(peer, now)

    @staticmethod
    def _step(transfer: Transfer, step: Callable[[float], list[bytes]], now: float) -> list[bytes]:
        """Run one step of ``transfer``; a file that cannot be read ends it with an ERROR."""
        try:
            return step(now)
        except OSError as exc:
            return transfer.abort(ErrorCode.NOT_DEFINED, f"cannot read the file: {exc.strerror}")

    def _send_all(self, peer: TftpPeer, datagrams: list[bytes], now: float) -> None:
        for datagram in datagrams:
            self.send(peer, datagram, now)

    def _refuse(self, peer: TftpPeer, error: ErrorPacket, now: float) -> None:
        """Answer a request with ``error``; the peer is forgotten at the next timer."""
        log.info("tftp %s: refused: %s", describe_peer(peer.addr), visible(error.message))
        self.send(peer, error.encode(), now)
        peer.transfer = _Refused(now)

    def _end(self, peer: TftpPeer, datagrams: list[bytes], now: float) -> None:
        self._send_all(peer, datagrams, now)
        self._settle(peer, now)

    # starting ----------------------------------------------------------------------

    def _start(self, peer: TftpPeer, request: Request, now: float) -> None:
        peer.request = request
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
        what = "upload" if request.write else "download"
        log.info(
            "tftp %s: %s %r (%s)",
            describe_peer(peer.addr),
            what,
            visible(request.filename),
            request.mode,
        )
        self._send_all(peer, self._step(transfer, transfer.start, now), now)

    def _read(self, peer: TftpPeer, request: Request, now: float) -> Transfer:
        file, st = self.store.open_file(request.filename)
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

    def get_timer(self) -> float | None:
        when = super().get_timer()
        for peer in self._peers.values():
            if peer.transfer is not None:
                due = peer.transfer.deadline()
                if due is None:
                    due = peer.last_seen
                if when is None or due < when:
                    when = due
        return when

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        for peer in list(self._peers.values()):
            transfer = peer.transfer
            if transfer is not None:
                self._send_all(peer, self._step(transfer, transfer.handle_timer, now), now)
                self._settle(peer, now, forget=True)

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

    def close(self) -> None:
        """Stop every transfer and let go of the directory."""
        for peer in list(self._peers.values()):
            self.forget(peer)
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
