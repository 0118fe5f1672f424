"""A bounded closed-loop load generator for length-prefixed echo servers.

``python benchmarks/loadgen.py PORT --conns 10 --seconds 3 --server-pid PID``

Opens ``--conns`` connections (``--tls``: over TLS) to 127.0.0.1:PORT on
uvloop with asyncio Protocol clients.  Each connection sends one ``--size`` byte message in a
4-byte big-endian length frame, waits for the whole echo, checks it byte for
byte (every message carries the connection's random payload and a sequence
number), and sends the next one.  After ``--warmup`` seconds it measures for
``--seconds``: completed requests, their latencies (send to last byte
received), and the CPU time the server process used over exactly that window
(utime+stime of all its threads, from /proc/PID/stat).  Then it stops
sending, lets the requests in flight finish, closes, and prints one JSON
object on stdout.

It always stops by itself: after ``--max-requests`` completed requests, and
at the latest ``--hard-limit`` seconds after it starts (a SIGALRM ends the
process if the event loop itself is stuck).  Exit status 0 on success,
1 if a connection failed or an echo was wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

from machine import machine_busy_seconds, own_cpu_seconds, process_cpu_times

HEADER = 4
HOST = "127.0.0.1"


@dataclass
class Run:
    """State shared by all the connections of one run."""

    max_requests: int
    measuring: bool = False
    stopping: bool = False
    completed: int = 0  # every completed request, warm-up included
    measured: int = 0  # completed inside the measured window
    latencies_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    open_connections: int = 0
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)
    over_cap: asyncio.Event = field(default_factory=asyncio.Event)


class EchoClient(asyncio.Protocol):
    """One connection: send a frame, wait for exactly that frame back, repeat."""

    def __init__(self, run: Run, size: int, seed: bytes) -> None:
        self._run = run
        self._body_tail = seed[: max(size - 8, 0)]
        self._size = size
        self._seq = 0
        self._expected = b""
        self._received = bytearray()
        self._sent_at = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._run.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        run = self._run
        if not run.stopping:
            run.errors.append(f"connection lost during the run: {exc or 'closed by server'}")
        run.open_connections -= 1
        if run.open_connections == 0:
            run.all_closed.set()

    def send_next(self) -> None:
        transport = self._transport
        assert transport is not None
        if self._run.stopping:
            transport.close()
            return
        self._seq += 1
        body = (self._seq.to_bytes(8, "big") + self._body_tail)[: self._size]
        self._expected = frame = len(body).to_bytes(HEADER, "big") + body
        self._sent_at = time.perf_counter_ns()
        transport.write(frame)

    def data_received(self, data: bytes) -> None:
        expected = self._expected
        received = self._received
        if not received and len(data) == len(expected):
            reply = data
        else:
            received += data
            if len(received) < len(expected):
                return
            reply = bytes(received)
            received.clear()
        done = time.perf_counter_ns()
        run = self._run
        if reply != expected:
            run.errors.append(
                f"bad echo: expected {len(expected)} bytes, got {len(reply)} that differ"
            )
            run.stopping = True
            assert self._transport is not None
            self._transport.abort()
            return
        run.completed += 1
        if run.measuring:
            run.measured += 1
            run.latencies_ns.append(done - self._sent_at)
        if run.completed >= run.max_requests:
            run.over_cap.set()
        self.send_next()


class LoadError(Exception):
    """A connection failed or an echo was wrong."""


def check(run: Run) -> None:
    if run.errors:
        raise LoadError("; ".join(run.errors[:5]))


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 if there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Wait until one of ``events`` is set or ``timeout`` seconds pass."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = Run(max_requests=args.max_requests)
    clients: list[EchoClient] = []
    transports: list[asyncio.Transport] = []

    context = None
    if args.tls:  # any certificate: the server is ours, on loopback
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    async def connect(index: int) -> None:
        seed = os.urandom(args.size)
        client = EchoClient(run, args.size, seed)
        transport, _ = await loop.create_connection(lambda: client, HOST, args.port, ssl=context)
        clients.append(client)
        transports.append(transport)

    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(connect(i) for i in range(args.conns))), args.connect_timeout
    )
    connect_seconds = time.monotonic() - started
    for client in clients:
        client.send_next()

    failed = asyncio.Event()

    async def watch_errors() -> None:
        while not run.errors:
            await asyncio.sleep(0.05)
        failed.set()

    watcher = asyncio.create_task(watch_errors())
    try:
        await wait_any(run.over_cap, failed, timeout=args.warmup)
        check(run)
        # The measured window.
        busy0 = machine_busy_seconds()
        server_user0, server_sys0 = process_cpu_times(args.server_pid)
        own_cpu0 = own_cpu_seconds()
        t0 = time.perf_counter()
        run.measuring = True
        await wait_any(run.over_cap, failed, timeout=args.seconds)
        run.measuring = False
        t1 = time.perf_counter()
        check(run)
        own_cpu1 = own_cpu_seconds()
        server_user1, server_sys1 = process_cpu_times(args.server_pid)
        busy1 = machine_busy_seconds()
    finally:
        watcher.cancel()
        # Stop: no new requests; connections close once their reply is in.
        run.stopping = True
        if run.open_connections:
            await wait_any(run.all_closed, timeout=args.drain_timeout)
        for transport in transports:
            transport.abort()

    window = t1 - t0
    latencies = sorted(run.latencies_ns)
    server_user = server_user1 - server_user0
    server_cpu = server_user + server_sys1 - server_sys0
    own_cpu = own_cpu1 - own_cpu0
    # Whatever else ran meanwhile (other processes, interrupts, steal): when this is
    # large, the server and the load generator had to share their CPUs.
    other_cpu = max(0.0, busy1 - busy0 - server_cpu - own_cpu)
    return {
        "ok": not run.errors,
        "errors": run.errors[:5],
        "conns": args.conns,
        "size": args.size,
        "connect_seconds": connect_seconds,
        "window_seconds": window,
        "requests": run.measured,
        "requests_total": run.completed,
        "capped": run.over_cap.is_set(),
        "rps": run.measured / window if window > 0 else 0.0,
        "p50_us": percentile(latencies, 0.50) / 1000,
        "p90_us": percentile(latencies, 0.90) / 1000,
        "p99_us": percentile(latencies, 0.99) / 1000,
        "max_us": (latencies[-1] / 1000) if latencies else 0.0,
        "server_cpu_seconds": server_cpu,
        "server_cpu_us_per_req": server_cpu * 1e6 / run.measured if run.measured else 0.0,
        "server_sys_fraction": (1 - server_user / server_cpu) if server_cpu else 0.0,
        "server_cpu_util": server_cpu / window if window > 0 else 0.0,
        "loadgen_cpu_util": own_cpu / window if window > 0 else 0.0,
        "other_cpu_util": other_cpu / window if window > 0 else 0.0,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("port", type=int, help="port of the echo server on 127.0.0.1")
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=1024, help="message bytes (>= 8)")
    parser.add_argument("--server-pid", type=int, required=True, help="process to charge CPU to")
    parser.add_argument("--max-requests", type=int, default=5_000_000)
    parser.add_argument("--tls", action="store_true", help="connect over TLS (no ALPN)")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    parser.add_argument(
        "--hard-limit", type=float, default=0.0, help="seconds (default: the whole run plus 30)"
    )
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be at least 8 (a sequence number goes in each message)")
    if args.conns < 1 or args.seconds <= 0 or args.max_requests < 1:
        parser.error("--conns, --seconds and --max-requests must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hard_limit = args.hard_limit or (
        args.connect_timeout + args.warmup + args.seconds + args.drain_timeout + 30
    )
    # The last resort if the loop never gets to its own deadlines: SIGALRM kills us.
    signal.setitimer(signal.ITIMER_REAL, hard_limit)
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(asyncio.wait_for(generate(args), hard_limit - 1))
    except (OSError, TimeoutError, LoadError) as exc:
        result = {"ok": False, "errors": [f"{type(exc).__name__}: {exc}"]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
