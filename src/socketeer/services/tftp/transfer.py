"""One TFTP transfer's state machine, sans-IO: option negotiation, windows, retries.

A :class:`Sender` sends a file (the server's side of a read request), a
:class:`Receiver` receives one (the server's side of a write request).  Both
take the packets that arrive, with the time, and return the datagrams to
send; :meth:`~Transfer.deadline` says when :meth:`~Transfer.handle_timer` is
due.  Block numbers are 16 bits on the wire and roll over from 65,535 to 0;
inside, blocks are counted without limit.

Until the peer has answered once (an ACK, or the first DATA), a transfer
sends one datagram for each request datagram and never retransmits on its
own: a forged request gets one reply, however long it waits.  A duplicate
ACK never causes a send (the "Sorcerer's Apprentice" fault of RFC 1350):
only the timer retransmits.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .packets import (
    ACK,
    DATA,
    MAX_BLKSIZE,
    MIN_BLKSIZE,
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OAck,
    Packet,
)

__all__ = [
    "LOCKSTEP_THREADS",
    "READ_BUFFER",
    "Abort",
    "NetasciiDecoder",
    "NetasciiReader",
    "OptionError",
    "Params",
    "Receiver",
    "Sender",
    "Settings",
    "Source",
    "Transfer",
    "negotiate",
]

BLOCKS = 65_536
#: The retransmission interval doubles after each retry, up to this many times the timeout.
MAX_BACKOFF = 8
#: A window holds at most this many bytes (the sender keeps it for retransmission).
MAX_WINDOW_BYTES = 1024 * 1024
#: Transfers at once, by default and at most: each has a socket of its own (see
#: :class:`~socketeer.udp.DatagramEndpoint`'s ``max_peer_sockets``, 1,024), with room
#: left for the refusals answered meanwhile.
MAX_TRANSFERS = 1000
#: Lock-step downloads (no ``windowsize``) served on threads of their own at once, by
#: default (see :mod:`~socketeer.services.tftp.lockstep`); more run on the event loop.
LOCKSTEP_THREADS = 64
#: A sender reads at most this many bytes ahead of its window.
READ_AHEAD = 256 * 1024
#: Bytes a download's file is read by at a time (a block or a window is taken from them).
READ_BUFFER = 64 * 1024

_HEAD = struct.Struct("!HH")


class Source(Protocol):
    """Where a sender's bytes come from (a binary file)."""

    def read(self, size: int, /) -> bytes: ...


class OptionError(ValueError):
    """A request option whose value is malformed (answered with error 8)."""


class Abort(Exception):
    """Raised by a receiver's sink to end the transfer with an ERROR packet."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Settings:
    """What a server allows: the largest block and window, its timeout and retries."""

    max_blksize: int = MAX_BLKSIZE
    max_windowsize: int = 64
    timeout: float = 1.0
    retries: int = 5
    #: Transfers running at once; a request beyond them is refused (server busy).
    max_transfers: int = MAX_TRANSFERS
    #: Lock-step downloads on threads of their own at once (at most ``max_transfers``).
    threads: int = LOCKSTEP_THREADS

    def __post_init__(self) -> None:
        if self.max_transfers < 1:
            raise ValueError("max_transfers must be >= 1")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if not MIN_BLKSIZE <= self.max_blksize <= MAX_BLKSIZE:
            raise ValueError(f"max_blksize must be {MIN_BLKSIZE}..{MAX_BLKSIZE}")
        if self.max_windowsize < 1:
            raise ValueError("max_windowsize must be >= 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")


@dataclass(frozen=True)
class Params:
    """What one transfer uses, after negotiation."""

    blksize: int = 512
    timeout: float = 1.0
    windowsize: int = 1
    retries: int = 5


def _number(options: dict[str, str], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise OptionError(f"{name}: {value[:20]!r} is not a number")
    return int(value)


def negotiate(
    options: dict[str, str], settings: Settings, tsize: int | None
) -> tuple[Params, dict[str, str]]:
    """The transfer's parameters and the options to put in the OACK.

    ``tsize`` is the file's size for a read (None: not known, as in
    netascii); a write's tsize is echoed.  Values out of range are ignored
    (RFC 2348, 2349, 7440), larger ones lowered to the server's maximum
    (a window to at most :data:`MAX_WINDOW_BYTES`);
    unknown options are ignored; a malformed number raises :class:`OptionError`.
    """
    accepted: dict[str, str] = {}
    blksize = _number(options, "blksize")
    if blksize is not None and blksize >= MIN_BLKSIZE:
        blksize = min(blksize, settings.max_blksize)
        accepted["blksize"] = str(blksize)
    else:
        blksize = 512
    timeout = _number(options, "timeout")
    if timeout is not None and 1 <= timeout <= 255:
        accepted["timeout"] = str(timeout)
        seconds = float(timeout)
    else:
        seconds = settings.timeout
    asked_size = _number(options, "tsize")
    if asked_size is not None:
        if tsize is None and asked_size > 0:
            accepted["tsize"] = str(asked_size)
        elif tsize is not None:
            accepted["tsize"] = str(tsize)
    window = _number(options, "windowsize")
    if window is not None and 1 <= window <= 65_535:
        window = min(window, settings.max_windowsize, max(1, MAX_WINDOW_BYTES // blksize))
        accepted["windowsize"] = str(window)
    else:
        window = 1
    return Params(blksize, seconds, window, settings.retries), accepted


class NetasciiReader:
    """``source`` read as netascii: LF becomes CR LF, CR becomes CR NUL."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._buffer = b""
        self._ended = False

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` converted bytes (fewer only at the end)."""
        while len(self._buffer) < size and not self._ended:
            chunk = self._source.read(65_536)
            if not chunk:
                self._ended = True
            self._buffer += chunk.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class NetasciiDecoder:
    """Netascii back to local text: CR LF becomes LF, CR NUL becomes CR."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        """The local bytes for ``data`` (a trailing CR waits for the next call)."""
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        return data.replace(b"\r\n", b"\n").replace(b"\r\x00", b"\r")

    def end(self) -> bytes:
        """What is left at the end of the transfer."""
        left, self._cr = (b"\r" if self._cr else b""), False
        return left


class Transfer(ABC):
    """What senders and receivers share: the outcome, the retry timer."""

    def __init__(self, params: Params, oack: dict[str, str], now: float) -> None:
        self.params = params
        self.oack = oack
        #: None while running; then "" when complete, or why it failed.
        self.outcome: str | None = None
        #: The peer has answered at least once (it receives at its address).
        self.heard = False
        self.retries = 0
        self._deadline = now + params.timeout
        self._first = OAck(oack).encode() if oack else b""

    @property
    def finished(self) -> bool:
        """Whether the transfer is over (complete or failed)."""
        return self.outcome is not None

    def deadline(self) -> float | None:
        """When :meth:`handle_timer` is due, None once finished."""
        return None if self.finished else self._deadline

    def _arm(self, now: float) -> None:
        self._deadline = now + self.params.timeout * min(2**self.retries, MAX_BACKOFF)

    def _fail(self, reason: str) -> None:
        self.outcome = reason

    def abort(self, code: int, message: str) -> list[bytes]:
        """End the transfer with an ERROR packet."""
        self._fail(message)
        return [ErrorPacket(code, message).encode()]

    def handle_timer(self, now: float) -> list[bytes]:
        """Retransmit, or give up after the retries; harmless when early."""
        if self.finished or now < self._deadline:
            return []
        if self._dallied():
            self.outcome = ""
            return []
        self.retries += 1
        if self.retries > self.params.retries:
            self._fail(f"no answer after {self.params.retries} retries")
            return []
        self._arm(now)
        return self._retransmit() if self.heard else []

    def repeat(self, now: float) -> list[bytes]:
        """The request came again before the peer answered: send the first reply again."""
        if self.heard or self.finished:
            return []
        return self.start(now)

    def receive(self, packet: Packet, now: float) -> list[bytes]:
        """Take one packet from the peer; return the datagrams to send."""
        if self.finished:
            return []
        if isinstance(packet, ErrorPacket):
            self._fail(f"peer ended the transfer: {packet.message}")
            return []
        return self._received(packet, now)

    @abstractmethod
    def start(self, now: float) -> list[bytes]:
        """The first datagram (OACK, first DATA or ACK 0)."""

    @abstractmethod
    def _received(self, packet: Packet, now: float) -> list[bytes]: ...

    @abstractmethod
    def _retransmit(self) -> list[bytes]: ...

    def _dallied(self) -> bool:
        return False


class Sender(Transfer):
    """Sends ``source`` block by block, ``windowsize`` blocks between ACKs.

    Each block's DATA datagram is built once, when the block is read, and
    kept until it is acknowledged.  :meth:`prepare` reads the next window
    ahead, so that the I/O layer can do it after sending, while the peer is
    busy: an ACK is then answered with datagrams already built.
    """

    def __init__(self, source: Source, params: Params, oack: dict[str, str], now: float) -> None:
        super().__init__(params, oack, now)
        self._source = source
        self._packets: dict[int, bytes] = {}  # block index -> its DATA datagram
        self._read_upto = 0  # the last block read
        self._sent_upto = 0  # the last block sent
        self._last: int | None = None  # the short block that ends the file
        self._base = 0 if oack else 1  # the first block not acknowledged (0: the OACK)
        # Read ahead at most one window, and at most READ_AHEAD bytes.
        self._ahead = min(params.windowsize, max(1, READ_AHEAD // params.blksize))
        self.sent_blocks = 0
        #: The bytes of the file the peer has acknowledged.
        self.acked_bytes = 0

    def start(self, now: float) -> list[bytes]:
        self._arm(now)
        if self._base == 0:
            return [self._first]
        return [self._data(1)]

    def _read(self, upto: int) -> None:
        """Read and build the blocks up to ``upto`` (fewer if the file ends first)."""
        blksize = self.params.blksize
        read = self._source.read
        packets = self._packets
        index = self._read_upto
        while index < upto and self._last is None:
            payload = read(blksize)  # may raise: nothing is counted as read until it returns
            index += 1
            packets[index] = _HEAD.pack(DATA, index & 0xFFFF) + payload
            self._read_upto = index
            if len(payload) < blksize:
                self._last = index

    def _data(self, index: int) -> bytes:
        if index > self._read_upto:
            self._read(index)
        self.sent_blocks += 1
        self._sent_upto = max(self._sent_upto, index)
        return self._packets[index]

    def _window(self) -> list[bytes]:
        base = self._base
        if base == 0:
            return [self._first]
        end = base + self.params.windowsize - 1
        if self._last is not None and end > self._last:
            end = self._last
        if end > self._read_upto:
            self._read(end)
            if self._last is not None and end > self._last:
                end = self._last
        packets = self._packets
        self.sent_blocks += end - base + 1
        if end > self._sent_upto:
            self._sent_upto = end
        if end == base:  # lock-step: one block
            return [packets[base]]
        return [packets[index] for index in range(base, end + 1)]

    def prepare(self) -> None:
        """Read the blocks the next ACK will ask for, if not read yet (after sending)."""
        if self._last is None and self.heard and not self.finished:
            self._read(self._base + self.params.windowsize - 1 + self._ahead)

    def lockstep(self) -> tuple[bytes, bytes] | None:
        """In lock-step, the ACK the peer is to send next and the DATA that answers it.

        None unless the window is one block, that block is sent and not the last,
        and the next one is read (see :meth:`prepare`).  The I/O layer may
        compare what arrives with the ACK and send the DATA at once, before any
        bookkeeping; then it must call :meth:`answered`.  For that ACK,
        :meth:`ack` would return exactly ``[DATA]``.
        """
        base = self._base
        if (
            self.outcome is not None
            or self.params.windowsize != 1
            or base > self._sent_upto
            or base >= self._read_upto  # the next block is not read (or there is none)
        ):
            return None
        return _HEAD.pack(ACK, base & 0xFFFF), self._packets[base + 1]

    def answered(self, now: float) -> None:
        """The ACK :meth:`lockstep` named came at ``now``, and its DATA was sent.

        Leaves the sender as :meth:`ack` would have (a send that failed is
        the timer's to repeat, as with :meth:`ack`'s datagrams).
        """
        base = self._base
        if base:  # block 0 is the OACK
            self.acked_bytes += len(self._packets.pop(base)) - 4
        self.heard = True
        self.retries = 0
        self._base = base = base + 1
        self._deadline = now + self.params.timeout
        self.sent_blocks += 1
        if base > self._sent_upto:
            self._sent_upto = base

    def _retransmit(self) -> list[bytes]:
        return self._window()

    def _received(self, packet: Packet, now: float) -> list[bytes]:
        if not isinstance(packet, Ack):
            return self.abort(ErrorCode.ILLEGAL_OPERATION, "expected an ACK")
        return self.ack(packet.block, now)

    def ack(self, block: int, now: float) -> list[bytes]:
        """Take an ACK of the 16-bit ``block``; return the datagrams to send."""
        if self.outcome is not None:
            return []
        # The block acknowledged, if it is one sent and not yet acknowledged.
        base = self._base
        acked = base - 1 + (block - base + 1) % BLOCKS
        if acked < base or acked > self._sent_upto:
            return []  # a duplicate or a stray: never answered (no Sorcerer's Apprentice)
        self.heard = True
        self.retries = 0
        packets = self._packets
        if acked == base:  # one block: every ACK in lock-step
            if base:  # block 0 is the OACK
                self.acked_bytes += len(packets.pop(base)) - 4
        else:
            for index in range(base or 1, acked + 1):
                self.acked_bytes += len(packets.pop(index)) - 4
        self._base = acked + 1
        if self._last is not None and acked >= self._last:
            self.outcome = ""
            return []
        self._deadline = now + self.params.timeout
        return self._window()


class Receiver(Transfer):
    """Receives blocks into ``sink``, acknowledging every ``windowsize`` blocks."""

    def __init__(
        self,
        sink: Callable[[bytes, bool], None],
        params: Params,
        oack: dict[str, str],
        now: float,
    ) -> None:
        super().__init__(params, oack, now)
        self._sink = sink
        self._expected = 1
        self._in_window = 0
        self._reacked = False
        self._complete = False
        self.received_bytes = 0

    def start(self, now: float) -> list[bytes]:
        self._arm(now)
        return [self._first or Ack(0).encode()]

    def _ack(self) -> list[bytes]:
        self._in_window = 0
        return [Ack((self._expected - 1) % BLOCKS).encode()]

    def _retransmit(self) -> list[bytes]:
        return self._ack()

    def _dallied(self) -> bool:
        return self._complete

    def _received(self, packet: Packet, now: float) -> list[bytes]:
        if not isinstance(packet, Data):
            return self.abort(ErrorCode.ILLEGAL_OPERATION, "expected DATA")
        if len(packet.payload) > self.params.blksize:
            return self.abort(ErrorCode.ILLEGAL_OPERATION, "block larger than the block size")
        if self._complete:
            # The last ACK was lost: the peer sent its last block again.
            return self._ack() if packet.block == (self._expected - 1) % BLOCKS else []
        if packet.block != self._expected % BLOCKS:
            if self._reacked or not self.heard:
                return []
            self._reacked = True  # once until progress: the timer covers a lost re-ACK
            return self._ack()
        last = len(packet.payload) < self.params.blksize
        try:
            self._sink(packet.payload, last)
        except Abort as exc:
            return self.abort(exc.code, exc.message)
        self.heard = True
        self.retries = 0
        self._reacked = False
        self._expected += 1
        self._in_window += 1
        self.received_bytes += len(packet.payload)
        if last:
            self._complete = True
            # Linger to acknowledge the last block again if the ACK is lost,
            # through the peer's first few retransmissions.
            self._deadline = now + 2 * MAX_BACKOFF * self.params.timeout
            return self._ack()
        self._arm(now)
        if self._in_window >= self.params.windowsize:
            return self._ack()
        return []

    @property
    def complete(self) -> bool:
        """Whether every block arrived (the transfer may still be lingering)."""
        return self._complete
