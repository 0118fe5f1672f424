"""Lock-step downloads on threads of their own, as tftpd-hpa serves each transfer.

A download without ``windowsize`` (one block per ACK) spends its time waiting
for each ACK, and on the event loop every block costs a turn of the loop.
Once its client has answered, such a transfer is handed to a thread that
owns the transfer's connected UDP socket and drives the same
:class:`~socketeer.services.tftp.transfer.Sender`: a blocking receive (the
GIL released meanwhile), the DATA the ACK asks for sent at once, then the
next block read ahead while the client writes.  From then on the thread
alone touches the transfer; it reports its end (and what it sent) to the
event loop with ``call_soon_threadsafe``.  At most ``limit`` threads run
at once; other transfers stay on the loop.

No wait is unbounded: a receive waits at most :data:`STOP_WAIT` seconds (or
the transfer's timeout, if shorter), then the thread looks whether the
server is stopping and whether the transfer's timer is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import BinaryIO

from ...datagram import Address
from ...endpoint import describe_peer
from .packets import ACK, ErrorCode, PacketError, parse
from .transfer import LOCKSTEP_THREADS, Sender, Transfer

__all__ = ["SPIN_WAIT", "STOPPED", "STOP_WAIT", "Done", "LockstepThreads", "step"]

log = logging.getLogger("socketeer.server")

#: A thread waits at most this long (seconds) in one receive, so that it sees a stop.
STOP_WAIT = 0.2
#: How long (seconds) a thread alone polls its socket before sleeping in a receive, while
#: its client answers that fast: a sleeping CPU takes longer to wake than the round trip.
SPIN_WAIT = 100e-6
#: The outcome of a transfer ended because the server stops.
STOPPED = "server stopped"
#: The largest datagram read (a larger one is cut short, and is no ACK).
MAX_RECEIVE = 65_536

#: No datagram to send (the DATA an ACK asked for is already sent).
_NOTHING: tuple[bytes, ...] = ()

#: Told, on the event loop, the client's address, how its transfer ended ("" when
#: complete, else why it failed) and the datagrams and bytes received and bytes sent.
Done = Callable[[Address, str, int, int, int], None]


def _unreadable(transfer: Transfer, exc: OSError) -> list[bytes]:
    return transfer.abort(ErrorCode.NOT_DEFINED, f"cannot read the file: {exc.strerror}")


def step(
    transfer: Transfer, method: Callable[..., list[bytes]], now: float, *args: object
) -> list[bytes]:
    """Run one step of ``transfer``; a file that cannot be read ends it with an ERROR."""
    try:
        return method(*args, now) if args else method(now)
    except OSError as exc:
        return _unreadable(transfer, exc)


def _send_all(send: Callable[[bytes], int], datagrams: Sequence[bytes]) -> int:
    """Send ``datagrams``; return the bytes sent (a datagram that fails is left to the timer)."""
    sent = 0
    for datagram in datagrams:
        try:
            sent += send(datagram)
        except OSError:  # a full buffer, or an error the client's host sent back
            continue
    return sent


def _wait_at_most(sock: socket.socket, seconds: float) -> None:
    """Make ``sock`` blocking, each receive returning (with no data) after ``seconds``."""
    if sys.platform.startswith("linux"):
        # In the kernel: no poll() before each receive, as Python's own timeout needs.
        sock.setblocking(True)
        whole = int(seconds)
        timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    else:
        sock.settimeout(seconds)


class LockstepThreads:
    """Runs lock-step downloads, each on a thread of its own, at most ``limit`` at once."""

    def __init__(self, limit: int = LOCKSTEP_THREADS) -> None:
        self.limit = limit
        # Added to on the event loop, discarded from by each thread as it ends (a set's
        # add, discard, len and copy are atomic in CPython).
        self._threads: set[threading.Thread] = set()
        self._stopping = False

    @property
    def room(self) -> bool:
        """Whether one more transfer may start on a thread now."""
        return not self._stopping and len(self._threads) < self.limit

    @property
    def running(self) -> int:
        """How many transfers run on threads now."""
        return len(self._threads)

    def start(
        self, sender: Sender, sock: socket.socket, file: BinaryIO | None, addr: Address, done: Done
    ) -> None:
        """Drive ``sender`` over ``sock`` (connected to ``addr``) on a new thread.

        Called on the event loop.  The thread owns ``sock`` and ``file`` and
        closes both at the end; then ``done`` runs on this event loop.
        """
        loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=self._run,
            args=(sender, sock, file, addr, loop, done),
            name=f"tftp {describe_peer(addr)}",
            daemon=True,
        )
        self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: the transfer cannot go on
            self._threads.discard(thread)
            sock.close()
            if file is not None:
                file.close()
            loop.call_soon(done, addr, f"cannot start a thread: {exc}", 0, 0, 0)

    def stop(self, wait: float = 1.0 + 2 * STOP_WAIT) -> None:
        """End every thread's transfer and wait (at most ``wait`` seconds in all) for them."""
        self._stopping = True
        deadline = time.monotonic() + wait
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(
        self,
        sender: Sender,
        sock: socket.socket,
        file: BinaryIO | None,
        addr: Address,
        loop: asyncio.AbstractEventLoop,
        done: Done,
    ) -> None:
        counts = [0, 0, 0]
        try:
            outcome = self._drive(sender, sock, counts)
        except Exception:
            outcome = "internal error"
            where, trace = describe_peer(addr), traceback.format_exc()
            loop.call_soon_threadsafe(log.error, "tftp %s: transfer failed:\n%s", where, trace)
        finally:
            sock.close()
            if file is not None:
                file.close()
            self._threads.discard(threading.current_thread())
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
            datagrams, received, sent = counts
            loop.call_soon_threadsafe(done, addr, outcome, datagrams, received, sent)

    def _drive(self, sender: Sender, sock: socket.socket, counts: list[int]) -> str:
        """Run ``sender`` until it ends (its outcome) or the threads stop (:data:`STOPPED`).

        ``counts`` gets the datagrams and bytes received and the bytes sent.
        """
        clock = time.monotonic
        buffer = bytearray(MAX_RECEIVE)
        recv_into = sock.recv_into
        send = sock.send
        lockstep = sender.lockstep
        answered = sender.answered
        prepare = sender.prepare
        datagrams = received = sent = 0
        replies: Sequence[bytes]
        threads = self._threads
        quick = False  # the last datagram came within SPIN_WAIT of the wait's start
        _wait_at_most(sock, min(sender.params.timeout, STOP_WAIT))
        try:
            while sender.outcome is None:
                if self._stopping:
                    return STOPPED
                ahead = lockstep()  # the ACK awaited and the DATA that answers it, if built
                waited = clock()
                try:
                    size = -1
                    if quick and len(threads) == 1:  # poll a moment before sleeping
                        until = waited + SPIN_WAIT
                        while clock() < until:
                            try:
                                size = recv_into(buffer, 0, socket.MSG_DONTWAIT)
                                break
                            except BlockingIOError:
                                pass
                    if size < 0:
                        size = recv_into(buffer)
                except (BlockingIOError, TimeoutError):  # nothing came: is the timer due?
                    replies = step(sender, sender.handle_timer, clock())
                except ConnectionRefusedError:  # the client's port is closed: the timer decides
                    continue
                else:
                    datagrams += 1
                    received += size
                    if ahead is not None and size == 4 and buffer[:4] == ahead[0]:
                        # The ACK awaited: its DATA leaves first, the bookkeeping follows.
                        try:  # noqa: SIM105 (suppress() would cost a call per block)
                            sent += send(ahead[1])
                        except OSError:  # a full buffer, or an error the client's host sent back
                            pass  # the timer resends
                        now = clock()
                        answered(now)
                        replies = _NOTHING
                    else:
                        now = clock()
                        replies = self._answer(sender, bytes(buffer[:size]), now)
                    quick = now - waited < SPIN_WAIT
                if replies:
                    sent += _send_all(send, replies)
                try:  # noqa: SIM105 (as above)
                    prepare()  # the next block, while the client writes this one
                except OSError:
                    pass  # read again, and reported, when the block is due
            return sender.outcome
        finally:
            counts[:] = [datagrams, received, sent]

    @staticmethod
    def _answer(sender: Sender, data: bytes, now: float) -> list[bytes]:
        """The answer to any datagram but the ACK awaited; an ERROR ends the transfer, garbage too.

        A duplicate or stray ACK gets none, but the timer may be due.
        """
        if len(data) == 4 and data[1] == ACK and data[0] == 0:
            replies = step(sender, sender.ack, now, data[2] << 8 | data[3])
        else:
            try:
                packet = parse(data)
            except PacketError as exc:
                return sender.abort(ErrorCode.ILLEGAL_OPERATION, str(exc))
            replies = step(sender, sender.receive, now, packet)
        return replies or step(sender, sender.handle_timer, now)
