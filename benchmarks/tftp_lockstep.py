"""The Python part of a lock-step TFTP download's thread, per block, without the network.

    python benchmarks/tftp_lockstep.py [--size 32M] [--runs 5]

Runs :meth:`LockstepThreads._drive` (the loop of a lock-step download's
thread) over a stand-in socket: each receive returns at once the ACK the
client would send next, each send only counts.  A file of ``--size`` random
bytes is served in blocks of 1,428 from a temporary file read as the server
reads it.  Prints, for each run, the CPU time per block and the mean time
from a receive's return to the send of the DATA it asks for (the server's
share of the round trip); the stand-in's own calls are in both.  Kernel
time (the real receive, send and wake-up) is not in these figures: the
whole download is measured by ``benchmarks/tftp.py``.  Pinned to the
server's CPU, as there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Sequence

from machine import SERVER_CPU
from socketeer.services.tftp.lockstep import LockstepThreads
from socketeer.services.tftp.packets import ACK
from socketeer.services.tftp.transfer import READ_BUFFER, Params, Sender
from tftp import parse_size

BLKSIZE = 1428
CHUNK = 1024 * 1024


class StandInSocket:
    """Answers each receive with the client's next ACK, at once; times receive to send."""

    def __init__(self, blocks: int) -> None:
        self._acks = [struct.pack("!HH", ACK, block & 0xFFFF) for block in range(blocks + 1)]
        self._next = 1  # the ACK of the OACK was taken on the event loop
        self._received_at = 0
        self.sends = 0
        self.path_ns = 0

    def setblocking(self, flag: bool) -> None:
        """Nothing to do."""

    def setsockopt(self, *args: object) -> None:
        """Nothing to do."""

    def recv_into(self, buffer: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        buffer[:4] = self._acks[self._next]
        self._next += 1
        self._received_at = time.perf_counter_ns()
        return 4

    def send(self, data: bytes) -> int:
        self.path_ns += time.perf_counter_ns() - self._received_at
        self.sends += 1
        return len(data)


def one_run(path: str, size: int) -> tuple[float, float]:
    """CPU microseconds per block, and mean microseconds from receive to send."""
    blocks = size // BLKSIZE + 1
    with open(path, "rb", buffering=READ_BUFFER) as file:
        sender = Sender(file, Params(blksize=BLKSIZE), {"blksize": str(BLKSIZE)}, 0.0)
        sender.start(0.0)
        sender.ack(0, 0.0)  # as on the event loop, before the hand-off
        sender.prepare()
        sock = StandInSocket(blocks)
        started = time.process_time()
        outcome = LockstepThreads()._drive(sender, sock, [0, 0, 0])  # type: ignore[arg-type]
        cpu = time.process_time() - started
    if outcome != "" or sender.acked_bytes != size:
        raise SystemExit(f"error: the download did not complete ({outcome!r})")
    return cpu / blocks * 1e6, sock.path_ns / sock.sends / 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("32M"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    os.sched_setaffinity(0, {SERVER_CPU})
    with tempfile.NamedTemporaryFile(prefix="socketeer-tftp-") as source:
        left = args.size
        while left > 0:
            left -= source.write(os.urandom(min(CHUNK, left)))
        source.flush()
        runs = [one_run(source.name, args.size) for _ in range(args.runs)]
    cpu = [run[0] for run in runs]
    path = [run[1] for run in runs]
    print(f"CPU per block (us): median {statistics.median(cpu):.2f}, min {min(cpu):.2f}")
    print(f"receive to send (us): median {statistics.median(path):.3f}, min {min(path):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
