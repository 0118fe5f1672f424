"""Chat benchmark: 1,000 members in one room, every message delivered to all of them.

    python benchmarks/chat.py [--members 1000] [--rates 100,200,400] [--rounds 5]
                              [--states none,sqlite,redis] [--protocols lines,websocket]
                              [--seconds 5] [--out docs/chat.md] [--json raw.json]

Each round measures every combination of ``--states`` (default ``none``) and
``--protocols`` (default ``lines``), each against fresh servers; the order of
the combinations alternates from round to round.  For each, it starts
``socketeer serve chat 127.0.0.1:0 --quiet --state ...`` (``none``: history
in memory only; ``sqlite``: history written to SQLite in a temporary
directory; uvloop, the server's other limits at their defaults) pinned to
CPU 0, and runs the load generator in this process pinned to CPU 1:
``--members`` connections on uvloop, asyncio Protocol clients, each logged in
with its own nickname in the lobby.  ``lines`` members speak the line
protocol (as nc does); ``websocket`` members upgrade ``GET /ws`` and send and
receive each line as a text message (as the chat page does).  For
each offered rate, messages are sent open-loop (a tick every 2 ms sends the
ones due) from the members in turn, so no member comes near the per-member
rate limit.  Each message carries the time it was sent (monotonic clock,
nanoseconds); every member that receives it records the delivery latency.
After a warm-up, messages sent during ``--seconds`` are measured; the run then
waits (at most 5 s) for their last deliveries.

``redis`` is the chat over two processes: ``redis-server --save ''
--appendonly no`` on a free loopback port and two ``socketeer serve chat
--redis ...`` processes, all three pinned to CPU 0 (the same core the single
process has), the members split evenly between the two.

Reported per rate: deliveries per second (deliveries of measured messages /
measured seconds), p50 and p99 delivery latency, the share of expected
deliveries that arrived, and CPU busy of the server and the load generator
over the window (and, for ``redis``, of redis-server, and the CPU time per
delivery of the chat processes and of Redis).  Each figure is the median
over the rounds.  Every round
stops by itself: the server is ended by its PID (SIGTERM, then SIGKILL), and
the whole run ends at ``--hard-limit`` seconds at the latest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, cast

from wsproto.frame_protocol import FrameProtocol

from machine import (
    CLIENT_CPU,
    SERVER_CPU,
    BenchmarkError,
    NoiseBudget,
    add_noise_options,
    machine_busy_seconds,
    noise_method,
    own_cpu_seconds,
    pin_self,
    pinned,
    process_cpu_seconds,
    quietest,
    usable_cpus_problem,
)
from report import table, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
READY = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
TICK = 0.002
DRAIN = 5.0
GOAL_DELIVERIES = 100_000
GOAL_P99_MS = 100.0
GOAL_REDIS_P50_MS = 2.0
START_MARK = "<!-- chat benchmark: start -->"
END_MARK = "<!-- chat benchmark: end -->"


#: CPU seconds so far: the chat servers, this process, the whole machine, redis-server.
CpuSample = tuple[float, float, float, float]


@dataclass
class Servers:
    """What one measurement runs against: the chat processes' ports and PIDs, and Redis's PID."""

    ports: list[int]
    pids: list[int]
    redis_pid: int | None = None


def cpu_sample(servers: Servers) -> CpuSample:
    """CPU seconds so far: the chat servers, this process, the whole machine, redis-server."""
    redis = process_cpu_seconds(servers.redis_pid) if servers.redis_pid else 0.0
    chat = sum(process_cpu_seconds(pid) for pid in servers.pids)
    return chat, own_cpu_seconds(), machine_busy_seconds(), redis


# --- the members --------------------------------------------------------------------------


@dataclass
class Window:
    """What one measurement collects."""

    start_ns: int = 0
    end_ns: int = 0
    sent: int = 0
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    #: CPU seconds (servers, load generator, machine, Redis) at the start and end of the window.
    cpu_start: CpuSample = (0.0, 0.0, 0.0, 0.0)
    cpu_end: CpuSample = (0.0, 0.0, 0.0, 0.0)


class Member(asyncio.Protocol):
    """One member: logs in, then records the latency of every benchmark line it receives."""

    def __init__(self, nick: str, crowd: Crowd) -> None:
        self.nick = nick
        self.crowd = crowd
        self.transport: asyncio.Transport | None = None
        self.joined = asyncio.get_running_loop().create_future()
        self._rest = b""
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(f"{self.nick}\n".encode())

    def say(self, line: bytes) -> None:
        """Send one line."""
        assert self.transport is not None
        self.transport.write(line + b"\n")

    def data_received(self, data: bytes) -> None:
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        self.heard(lines)

    def heard(self, lines: list[bytes]) -> None:
        """Lines from the chat: record the latency of the benchmark's."""
        now = time.monotonic_ns()
        window = self.crowd.window
        for line in lines:
            # "HH:MM:SS #lobby <nick> bench SENT_NS"
            head, _, sent = line.rpartition(b" ")
            if head.endswith(b"> bench"):
                sent_ns = int(sent)
                if window.start_ns <= sent_ns < window.end_ns:
                    window.latencies_ns.append(now - sent_ns)
                self.crowd.last_delivery = now
            elif not self.joined.done() and b"-!- you joined " in line:
                self.joined.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.joined.done():
            self.joined.set_exception(BenchmarkError(f"{self.nick} was cut off: {exc}"))


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class WebSocketMember(Member):
    """A member over WebSocket: each line one text message, as the chat page sends them.

    Frames from the server are read with a few lines of code of its own (they
    are unmasked and whole: the load generator must not cost more than the
    server); frames to it are made by wsproto.
    """

    def __init__(self, nick: str, crowd: Crowd) -> None:
        super().__init__(nick, crowd)
        self._frames = FrameProtocol(client=True, extensions=[])
        self._upgraded = False
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(UPGRADE)
        self.say(self.nick.encode())

    def say(self, line: bytes) -> None:
        assert self.transport is not None
        self.transport.write(bytes(self._frames.send_data(line.decode())))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101 "):
                raise BenchmarkError(f"upgrade refused: {buffer[:200]!r}")
            self._upgraded = True
            buffer = buffer[end + 4 :]
        lines = []
        at, size = 0, len(buffer)
        while size - at >= 2:
            length = buffer[at + 1]
            head = 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 4]), 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 10]), 10
            if size - at < head + length:
                break
            if buffer[at] == 0x81:
                lines.append(buffer[at + head : at + head + length])
            at += head + length
        self._buffer = buffer[at:]
        self.heard(lines)


class Crowd:
    """Every member of one round."""

    def __init__(self, protocol: str = "lines") -> None:
        self.member_class = WebSocketMember if protocol == "websocket" else Member
        self.members: list[Member] = []
        self.window = Window()
        self.last_delivery = 0

    async def join(self, ports: list[int], count: int) -> None:
        """``count`` members, spread evenly over the servers at ``ports``."""
        loop = asyncio.get_running_loop()
        for start in range(0, count, 100):
            batch = []
            for number in range(start, min(count, start + 100)):
                member = self.member_class(f"m{number:04}", self)
                port = ports[number % len(ports)]
                await loop.create_connection(lambda m=member: m, "127.0.0.1", port)  # type: ignore[misc]
                batch.append(member.joined)
                self.members.append(member)
            async with asyncio.timeout(30):
                await asyncio.gather(*batch)
        await self.quiet()

    async def quiet(self, seconds: float = 0.5) -> None:
        """Wait until nothing has been received for ``seconds`` (join announcements settle)."""
        await asyncio.sleep(seconds)

    async def send(self, rate: float, warmup: float, seconds: float, servers: Servers) -> Window:
        """Send ``rate`` messages a second; measure those sent after ``warmup`` for ``seconds``."""
        self.window = window = Window()
        measuring = False
        start = time.monotonic_ns()
        window.start_ns = start + int(warmup * 1e9)
        window.end_ns = window.start_ns + int(seconds * 1e9)
        members = self.members
        sent = 0
        turn = 0
        while True:
            now = time.monotonic_ns()
            if now >= window.end_ns:
                window.cpu_end = cpu_sample(servers)
                break
            if not measuring and now >= window.start_ns:
                measuring = True
                window.cpu_start = cpu_sample(servers)
            due = int(rate * (now - start) / 1e9) - sent
            for _ in range(due):
                member = members[turn % len(members)]
                turn += 1
                stamp = time.monotonic_ns()
                member.say(b"bench %d" % stamp)
                if window.start_ns <= stamp < window.end_ns:
                    window.sent += 1
            sent += max(due, 0)
            await asyncio.sleep(TICK)
        expected = window.sent * len(members)
        deadline = time.monotonic() + DRAIN
        while len(window.latencies_ns) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if any(member.lost for member in members):
            raise BenchmarkError("a member was disconnected during the run")
        return window

    def close(self) -> None:
        for member in self.members:
            if member.transport is not None:
                member.transport.close()


# --- one round ---------------------------------------------------------------------------


@dataclass
class Measurement:
    """One rate in one round."""

    rate: float
    deliveries_per_second: float
    p50_ms: float
    p99_ms: float
    delivered_share: float
    server_cpu: float
    loadgen_cpu: float
    other_cpu: float
    redis_cpu: float = 0.0
    attempts: int = 1
    state: str = "none"
    protocol: str = "lines"

    @property
    def chat_us_per_delivery(self) -> float:
        """CPU microseconds the chat processes spent per delivery."""
        return per_delivery(self.server_cpu, self.deliveries_per_second)

    @property
    def redis_us_per_delivery(self) -> float:
        """CPU microseconds redis-server spent per delivery."""
        return per_delivery(self.redis_cpu, self.deliveries_per_second)


def per_delivery(cpu: float, deliveries_per_second: float) -> float:
    """CPU microseconds per delivery, from CPUs busy and deliveries a second."""
    return cpu / deliveries_per_second * 1e6 if deliveries_per_second else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(log: IO[bytes], directory: str) -> tuple[subprocess.Popen[bytes], int]:
    """redis-server on a free loopback port, pinned with the chat servers, writing nothing."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", directory]
    proc = subprocess.Popen(pinned(command, SERVER_CPU), stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as c:
            c.sendall(b"PING\r\n")
            if c.recv(64).startswith(b"+PONG"):
                return proc, port
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise BenchmarkError("redis-server did not start")
        time.sleep(0.05)


def start_server(log: IO[bytes], *state: str) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, "-m", "socketeer", "serve", "chat", "127.0.0.1:0", "--quiet"]
    command += state
    proc = subprocess.Popen(pinned(command, SERVER_CPU), stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = READY.search(line)
    if not found:
        stop_server(proc)
        raise BenchmarkError(f"server did not start: {line!r}")
    return proc, int(found.group(1))


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def percentile(values: list[int], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] / 1e6


async def measure(
    crowd: Crowd, servers: Servers, rate: float, warmup: float, seconds: float, members: int
) -> Measurement:
    """One measurement at ``rate`` messages a second."""
    window = await crowd.send(rate, warmup, seconds, servers)
    window_seconds = (window.end_ns - window.start_ns) / 1e9
    server_cpu, loadgen_cpu, machine_cpu, redis_cpu = (
        (end - start) / window_seconds
        for start, end in zip(window.cpu_start, window.cpu_end, strict=True)
    )
    latencies = sorted(window.latencies_ns)
    expected = window.sent * members
    await crowd.quiet()
    return Measurement(
        rate=rate,
        deliveries_per_second=len(latencies) / window_seconds,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        delivered_share=len(latencies) / expected if expected else 0.0,
        server_cpu=server_cpu,
        loadgen_cpu=loadgen_cpu,
        other_cpu=max(0.0, machine_cpu - server_cpu - loadgen_cpu - redis_cpu),
        redis_cpu=redis_cpu,
    )


def run_round(
    args: argparse.Namespace, budget: NoiseBudget, log: IO[bytes], number: int
) -> list[Measurement]:
    """One round: each state with each protocol in turn (the order alternating by round)."""
    combinations = list(itertools.product(args.states, args.protocols))
    if number % 2:
        combinations.reverse()
    results = []
    for state, protocol in combinations:
        with tempfile.TemporaryDirectory(prefix="chat-bench-") as kept:
            results += run_state(args, budget, log, number, kept, state, protocol)
    return results


def run_state(
    args: argparse.Namespace,
    budget: NoiseBudget,
    log: IO[bytes],
    number: int,
    directory: str,
    name: str,
    protocol: str,
) -> list[Measurement]:
    """Fresh servers keeping state as ``name`` says; members speaking ``protocol`` join them.

    The event loop runs only while members join and while a measurement
    runs; in between, the noise policy waits for a quiet machine.
    """
    with contextlib.ExitStack() as stack:
        if name == "redis":
            redis, redis_port = start_redis(log, directory)
            stack.callback(stop_server, redis)
            url = f"redis://127.0.0.1:{redis_port}/0"
            started = [start_server(log, "--redis", url) for _ in range(2)]
        else:
            started = [start_server(log, "--state", "none" if name == "none" else directory)]
            redis = None
        for proc, _ in started:
            stack.callback(stop_server, proc)
        servers = Servers(
            [port for _, port in started],
            [proc.pid for proc, _ in started],
            redis.pid if redis is not None else None,
        )
        return run_load(args, budget, number, name, protocol, servers)


def run_load(
    args: argparse.Namespace,
    budget: NoiseBudget,
    number: int,
    name: str,
    protocol: str,
    servers: Servers,
) -> list[Measurement]:
    """The members, speaking ``protocol``, join ``servers``, then each rate is measured."""
    import uvloop

    crowd = Crowd(protocol)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            runner.run(crowd.join(servers.ports, args.members))
            results = []
            for rate in args.rates:
                label = f"round {number + 1} {name} {protocol} rate {rate:g}"

                def once(rate: float = rate) -> Measurement:
                    return runner.run(
                        measure(crowd, servers, rate, args.warmup, args.seconds, args.members)
                    )

                def show(m: Measurement, noisy: bool, label: str = label) -> None:
                    print(
                        f"{label}: {m.deliveries_per_second:,.0f} deliveries/s, p50"
                        f" {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms, delivered"
                        f" {m.delivered_share:.2%}, server CPU {m.server_cpu:.0%}, redis"
                        f" CPU {m.redis_cpu:.0%}, load CPU"
                        f" {m.loadgen_cpu:.0%}, other CPU {m.other_cpu:.0%}"
                        + ("  (noisy)" if noisy else ""),
                        flush=True,
                    )

                best, attempts = quietest(
                    once, lambda m: m.other_cpu, budget, args.noisy, args.retries, show
                )
                best.attempts = attempts
                best.state = name
                best.protocol = protocol
                results.append(best)
            return results
        finally:
            crowd.close()


# --- report ------------------------------------------------------------------------------


def median_of(
    rounds: list[list[Measurement]], rate: float, state: str, protocol: str
) -> dict[str, float]:
    """Each figure's median over the rounds, at ``rate`` for ``state`` and ``protocol``."""
    rows = [
        m
        for r in rounds
        for m in r
        if m.rate == rate and m.state == state and m.protocol == protocol
    ]
    figures = [name for name, value in asdict(rows[0]).items() if not isinstance(value, str)]
    figures += ["chat_us_per_delivery", "redis_us_per_delivery"]
    return {name: statistics.median(getattr(row, name) for row in rows) for name in figures}


def redis_table(rounds: list[list[Measurement]], rates: list[float], protocols: list[str]) -> str:
    """Two processes and Redis against one process, by protocol and rate."""
    rows = []
    for protocol, rate in itertools.product(protocols, rates):
        one = median_of(rounds, rate, "none", protocol)
        two = median_of(rounds, rate, "redis", protocol)
        added = two["p50_ms"] - one["p50_ms"]
        rows.append(
            [
                protocol,
                f"{rate:,.0f}",
                f"{one['deliveries_per_second']:,.0f} / {two['deliveries_per_second']:,.0f}",
                f"{one['p50_ms']:.1f} / {two['p50_ms']:.1f}",
                f"{one['p99_ms']:.1f} / {two['p99_ms']:.1f}",
                f"{one['chat_us_per_delivery']:.2f} / {two['chat_us_per_delivery']:.2f}",
                f"{two['redis_us_per_delivery']:.3f}",
                f"{added:+.1f} ({'met' if added <= GOAL_REDIS_P50_MS else 'not met'})",
            ]
        )
    return table(
        [
            "members speak",
            "offered msg/s",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "chat CPU µs/delivery",
            "Redis CPU µs/delivery",
            f"p50 added (goal <= {GOAL_REDIS_P50_MS:g} ms)",
        ],
        rows,
        align="l" + "r" * 7,
    )


def rate_row(
    rounds: list[list[Measurement]], rate: float, state: str, protocol: str
) -> list[object]:
    m = median_of(rounds, rate, state, protocol)
    ratio = m["deliveries_per_second"] / GOAL_DELIVERIES
    met = "met" if ratio >= 1 and m["p99_ms"] < GOAL_P99_MS else "not met"
    if ratio < 1 and m["delivered_share"] >= 0.999:  # all delivered: less was offered
        met = "less offered than the goal"
    return [
        state,
        protocol,
        f"{rate:,.0f}",
        f"{m['deliveries_per_second']:,.0f}",
        f"{m['p50_ms']:.1f}",
        f"{m['p99_ms']:.1f}",
        f"{m['delivered_share']:.2%}",
        f"{m['server_cpu']:.0%}",
        f"{m['loadgen_cpu']:.0%}",
        f"{m['other_cpu']:.0%}",
        f"{ratio:.2f}x, {m['p99_ms'] / GOAL_P99_MS:.2f}x ({met})",
    ]


def rates_table(
    rounds: list[list[Measurement]], rates: list[float], states: list[str], protocols: list[str]
) -> str:
    return table(
        [
            "history",
            "members speak",
            "offered msg/s",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "delivered",
            "server CPU",
            "load CPU",
            "other CPU",
            "vs goal (deliveries, p99)",
        ],
        (
            rate_row(rounds, rate, state, protocol)
            for state, protocol, rate in itertools.product(states, protocols, rates)
        ),
        align="ll" + "r" * 8 + "l",
    )


def states_table(rounds: list[list[Measurement]], rates: list[float], protocols: list[str]) -> str:
    """SQLite history against none: each figure's change, by protocol and rate."""

    def change(sqlite: float, none: float) -> str:
        return f"{(sqlite - none) / none:+.1%}" if none else "-"

    rows = []
    for protocol, rate in itertools.product(protocols, rates):
        none = median_of(rounds, rate, "none", protocol)
        sqlite = median_of(rounds, rate, "sqlite", protocol)
        rows.append(
            [
                protocol,
                f"{rate:,.0f}",
                *(
                    change(sqlite[name], none[name])
                    for name in ("deliveries_per_second", "p50_ms", "p99_ms", "server_cpu")
                ),
            ]
        )
    return table(
        ["members speak", "offered msg/s", "deliveries/s", "p50", "p99", "server CPU"],
        rows,
        align="l" + "r" * 5,
    )


def report(
    args: argparse.Namespace, rounds: list[list[Measurement]], wall: float, budget: NoiseBudget
) -> str:
    command = "python benchmarks/chat.py " + " ".join(args.argv)
    kept = [m.other_cpu for r in rounds for m in r]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            START_MARK,
            f"- Command: `{command.strip()}` (from the repository root; {wall:.0f} s)",
            f"- {when}; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}),"
            f" Python {platform.python_version()}, Linux {platform.release()}",
            f"- {args.members:,} members in one room on 127.0.0.1, speaking"
            f" {' and '.join(args.protocols)} (lines: the line protocol, as nc; websocket:"
            " `GET /ws`, a text message a line, as the chat page); server pinned to CPU"
            f" {SERVER_CPU} (`socketeer serve chat --quiet --state ...`, uvloop, default"
            " limits: history 50 lines and 64 KiB per room; redis: two `serve chat --redis`"
            " processes and redis-server, all three on that CPU), load"
            f" generator pinned to CPU {CLIENT_CPU} (one process, uvloop)",
            f"- Each rate: {args.warmup:g} s warm-up, {args.seconds:g} s measured;"
            f" median of {len(rounds)} rounds, a fresh server each round",
            f"- {noise_method(args, budget, kept)} Other CPU below is what the rest of the"
            " machine used during the kept measurement.",
            f"- Goal: {GOAL_DELIVERIES:,} deliveries/s with p99 under {GOAL_P99_MS:g} ms",
            "",
            rates_table(rounds, args.rates, args.states, args.protocols),
            *(
                [
                    "",
                    "SQLite history against history in memory only (the change of each median):",
                    "",
                    states_table(rounds, args.rates, args.protocols),
                ]
                if {"none", "sqlite"} <= set(args.states)
                else []
            ),
            *(
                [
                    "",
                    f"{args.members:,} members over two processes and one Redis against one process"
                    " (each cell: one process / two with Redis; CPU per delivery: CPU time"
                    " of all chat processes, and of redis-server, over deliveries):",
                    "",
                    redis_table(rounds, args.rates, args.protocols),
                ]
                if {"none", "redis"} <= set(args.states)
                else []
            ),
            END_MARK,
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rates", default="100,200,400", help="messages a second, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--protocols",
        default="lines",
        help="what the members speak: lines, websocket (comma-separated)",
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--states",
        default="none",
        help="history kept: none, sqlite, redis (two processes and Redis; comma-separated)",
    )
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--hard-limit", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, help="update the benchmark section of this file")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    add_noise_options(parser, budget=120.0)
    args = parser.parse_args(argv)
    args.argv = argv
    args.rates = [float(rate) for rate in args.rates.split(",")]
    args.states = list(dict.fromkeys(args.states.split(",")))
    if not set(args.states) <= {"none", "sqlite", "redis"}:
        parser.error("--states takes none, sqlite and/or redis")
    args.protocols = list(dict.fromkeys(args.protocols.split(",")))
    if not set(args.protocols) <= {"lines", "websocket"}:
        parser.error("--protocols takes lines and/or websocket")
    if not 1 <= args.members <= 5000 or not 1 <= args.rounds <= 20 or args.seconds > 60:
        parser.error("keep --members to 1..5000, --rounds to 1..20 and --seconds to 60")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if problem := usable_cpus_problem():
        print(f"error: {problem}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(int(args.hard_limit))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pin_self()
    started = time.monotonic()
    budget = NoiseBudget.from_args(args)
    rounds: list[list[Measurement]] = []
    with tempfile.TemporaryFile() as log:
        for number in range(args.rounds):
            try:
                rounds.append(run_round(args, budget, log, number))
            except BenchmarkError as exc:
                log.seek(0)
                print(f"round {number + 1}: {exc}\n{log.read().decode()[-2000:]}", file=sys.stderr)
                return 1
    section = report(args, rounds, time.monotonic() - started, budget)
    print(section)
    if args.out:
        write_section(args.out, section, START_MARK, END_MARK)
    if args.json:
        args.json.write_text(json.dumps([[asdict(m) for m in r] for r in rounds], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
