"""Echo benchmark: socketeer's echo server against three hand-made anchors.

    python benchmarks/echo.py [--seconds 3] [--rounds 3] [--conns 1,10,100]
                              [--out docs/benchmarks.md] [--json raw.json]

For each round, each server and each concurrency level: the server runs
pinned to CPU 0, and ``benchmarks/loadgen.py`` (uvloop, asyncio Protocol
clients, 1 KiB length-framed messages, closed loop) runs pinned to CPU 1 for
a warm-up and then ``--seconds`` measured seconds.  Measured: requests per
second, p50/p99 latency, and the server process's CPU time (utime+stime over
all its threads, from /proc/PID/stat) per request over the measured window.
Rounds are interleaved (round 1 of every server, then round 2, ...) and the
median of the rounds is reported.  Each server is started fresh per round
and ended by its own PID (SIGTERM, then SIGKILL after a timeout).  All
traffic stays on 127.0.0.1.

The goals printed next to the figures are goals, not assertions: the run
reports what it measured and whether each goal was met.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from machine import (
    CLIENT_CPU,
    SERVER_CPU,
    BenchmarkError,
    NoiseBudget,
    add_noise_options,
    load_average,
    machine_facts,
    noise_method,
    pin_self,
    pinned,
    quietest,
    usable_cpus_problem,
)
from report import head, spread, table, write_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
READY = re.compile(r"listening on (?:tls://)?127\.0\.0\.1:(\d+)")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# Goals for socketeer, stated next to the figures (see docs/benchmarks.md).
GOAL_CPU_VS_PROTOCOL = 1.2
GOAL_CPU_VS_BASELINE = 1.1
GOAL_CPU_VS_THREADING = 0.75
GOAL_RPS_VS_PROTOCOL = 0.9
GOAL_RPS_CONNS = 100


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    command: tuple[str, ...]


PY = sys.executable
ANCHORS = str(HERE / "echo_servers.py")
SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "socketeer",
        "socketeer echo",
        (PY, "-m", "socketeer", "serve", "echo", "127.0.0.1:0", "--framing", "length", "--quiet"),
    ),
    ServerSpec("protocol", "(b) uvloop Protocol", (PY, ANCHORS, "uvloop-protocol")),
    ServerSpec("threading", "(a) ThreadingTCPServer", (PY, ANCHORS, "threading")),
    ServerSpec("streams", "(c) asyncio streams", (PY, ANCHORS, "asyncio-streams")),
)
SERVER_KEYS = tuple(spec.key for spec in SERVERS)


# Processes ------------------------------------------------------------------------------


class RunningServer:
    """A server process we started; we end it by its PID and nothing else."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        # Closed in stop(), which every path through here reaches.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            pinned(spec.command, SERVER_CPU),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=env,
        )
        self.pid = self.proc.pid
        self.exit_code: int | None = None
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            self.close()
            raise

    def _wait_ready(self) -> int:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT
        seen = b""
        while b"\n" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchmarkError(f"{self.spec.label} did not report its port in time")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise BenchmarkError(
                        f"{self.spec.label} exited before listening: {self.stderr_text()}"
                    )
                seen += chunk
        match = READY.search(seen.decode(errors="replace"))
        if not match:
            raise BenchmarkError(f"{self.spec.label} printed {seen!r}, not 'listening on ...'")
        return int(match.group(1))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self) -> int:
        """SIGTERM our server's PID, SIGKILL it if it is not gone in time; return its status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.exit_code = self.proc.returncode
        return self.exit_code

    def close(self) -> None:
        self._stderr.close()


@contextlib.contextmanager
def running(spec: ServerSpec) -> Iterator[RunningServer]:
    server = RunningServer(spec)
    try:
        yield server
    finally:
        code = server.stop()
        if code != 0:
            print(
                f"  note: {spec.label} exited with status {code}: {server.stderr_text()}",
                file=sys.stderr,
            )
        server.close()


def run_load(server: RunningServer, conns: int, args: argparse.Namespace) -> dict[str, Any]:
    command = pinned(
        [
            PY,
            str(HERE / "loadgen.py"),
            str(server.port),
            "--conns",
            str(conns),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
            "--size",
            str(args.size),
            "--server-pid",
            str(server.pid),
            *(["--tls"] if getattr(args, "tls", False) else []),
        ],
        CLIENT_CPU,
    )
    budget = args.warmup + args.seconds + 60
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=budget, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired as exc:  # run() has already killed it by its PID
        raise BenchmarkError(f"load generator did not stop within {budget:g}s") from exc
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"load generator failed: {done.stderr.strip()[-2000:]}") from exc
    if not result.get("ok"):
        raise BenchmarkError(
            f"load against {server.spec.label} with {conns} conns failed: {result.get('errors')}"
        )
    if not server.alive():
        raise BenchmarkError(f"{server.spec.label} died: {server.stderr_text()}")
    return result


def measure(
    server: RunningServer,
    conns: int,
    args: argparse.Namespace,
    label: str,
    budget: NoiseBudget,
) -> dict[str, Any]:
    """One measurement, repeated while other processes were busy and the budget allows.

    Of the attempts, the one during which other processes used the least CPU is kept.
    """

    def show(result: dict[str, Any], noisy: bool) -> None:
        print(
            f"{label}: {result['rps']:>9,.0f} req/s  p50 {result['p50_us']:>6.0f} us  "
            f"p99 {result['p99_us']:>6.0f} us  "
            f"{result['server_cpu_us_per_req']:>5.1f} us CPU/req  "
            f"other CPU {result['other_cpu_util']:.0%}" + ("  (noisy)" if noisy else ""),
            file=sys.stderr,
            flush=True,
        )

    best, attempts = quietest(
        lambda: run_load(server, conns, args),
        lambda result: float(result["other_cpu_util"]),
        budget,
        args.noisy,
        args.retries,
        show,
    )
    return best | {"attempts": attempts}


# Facts and figures ----------------------------------------------------------------------


def echo_facts() -> dict[str, str]:
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    return machine_facts() | {"uvloop": uvloop_version}


def median(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in rounds))


Results = dict[tuple[str, int], list[dict[str, Any]]]


def results_table(results: Results, servers: Sequence[ServerSpec], conns: Sequence[int]) -> str:
    return table(
        ["server", "conns", "req/s", "p50 us", "p99 us", "server CPU us/req"],
        (
            [
                spec.label,
                n,
                f"{median(results[spec.key, n], 'rps'):,.0f}",
                f"{median(results[spec.key, n], 'p50_us'):.0f}",
                f"{median(results[spec.key, n], 'p99_us'):.0f}",
                f"{median(results[spec.key, n], 'server_cpu_us_per_req'):.1f}",
            ]
            for spec in servers
            for n in conns
        ),
    )


def detail_row(spec: ServerSpec, n: int, rounds: list[dict[str, Any]]) -> list[object]:
    client = median(rounds, "loadgen_cpu_util")
    flag = " (saturated)" if client >= 0.95 else ""
    return [
        spec.label,
        n,
        f"{median(rounds, 'server_cpu_util'):.0%}",
        f"{median(rounds, 'server_sys_fraction'):.0%}",
        f"{client:.0%}{flag}",
        f"{median(rounds, 'other_cpu_util'):.0%}",
        spread((float(r["rps"]) for r in rounds), ",.0f"),
        spread((float(r["server_cpu_us_per_req"]) for r in rounds), ".1f"),
    ]


def detail_table(results: Results, servers: Sequence[ServerSpec], conns: Sequence[int]) -> str:
    return table(
        [
            "server",
            "conns",
            "server CPU busy",
            "server CPU in kernel",
            "load generator CPU busy",
            "other CPU busy",
            "req/s, min to max",
            "server CPU us/req, min to max",
        ],
        (detail_row(spec, n, results[spec.key, n]) for spec in servers for n in conns),
    )


@dataclass(frozen=True)
class Ratios:
    conns: int
    cpu_vs_protocol: float | None
    cpu_vs_threading: float | None
    rps_vs_protocol: float | None
    cpu_vs_streams: float | None
    rps_vs_streams: float | None
    protocol_cpu_vs_threading: float | None  # what the hand-written anchor itself reaches
    cpu_vs_baseline: float | None  # against an earlier socketeer (--baseline)
    baseline_cpu_vs_protocol: float | None


def ratio(results: Results, key: str, other: str, n: int, metric: str) -> float | None:
    if (key, n) not in results or (other, n) not in results:
        return None
    theirs = median(results[other, n], metric)
    return median(results[key, n], metric) / theirs if theirs else None


def compute_ratios(results: Results, conns: Sequence[int]) -> list[Ratios]:
    cpu, rps = "server_cpu_us_per_req", "rps"
    return [
        Ratios(
            n,
            ratio(results, "socketeer", "protocol", n, cpu),
            ratio(results, "socketeer", "threading", n, cpu),
            ratio(results, "socketeer", "protocol", n, rps),
            ratio(results, "socketeer", "streams", n, cpu),
            ratio(results, "socketeer", "streams", n, rps),
            ratio(results, "protocol", "threading", n, cpu),
            ratio(results, "socketeer", "baseline", n, cpu),
            ratio(results, "baseline", "protocol", n, cpu),
        )
        for n in conns
    ]


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def verdict(value: float | None, goal: float, at_most: bool) -> str:
    if value is None:
        return "not measured"
    met = value <= goal if at_most else value >= goal
    return "met" if met else "missed"


def ratio_table(ratios: Sequence[Ratios]) -> str:
    def row(r: Ratios) -> list[object]:
        rps_goal = (
            f" ({verdict(r.rps_vs_protocol, GOAL_RPS_VS_PROTOCOL, at_most=False)})"
            if r.conns == GOAL_RPS_CONNS
            else ""
        )
        return [
            r.conns,
            f"{fmt_ratio(r.cpu_vs_protocol)} "
            f"({verdict(r.cpu_vs_protocol, GOAL_CPU_VS_PROTOCOL, at_most=True)})",
            f"{fmt_ratio(r.cpu_vs_threading)} "
            f"({verdict(r.cpu_vs_threading, GOAL_CPU_VS_THREADING, at_most=True)})",
            f"{fmt_ratio(r.rps_vs_protocol)}{rps_goal}",
            fmt_ratio(r.cpu_vs_streams),
            fmt_ratio(r.rps_vs_streams),
            fmt_ratio(r.protocol_cpu_vs_threading),
        ]

    return table(
        [
            "conns",
            f"CPU/req vs (b) uvloop Protocol (goal <= {GOAL_CPU_VS_PROTOCOL}x)",
            f"CPU/req vs (a) ThreadingTCPServer (goal <= {GOAL_CPU_VS_THREADING}x)",
            f"req/s vs (b) uvloop Protocol (goal >= {GOAL_RPS_VS_PROTOCOL}x at "
            f"{GOAL_RPS_CONNS} conns)",
            "CPU/req vs (c) asyncio streams",
            "req/s vs (c) asyncio streams",
            "for reference: CPU/req of (b) vs (a)",
        ],
        (row(r) for r in ratios),
        align="r" * 7,
    )


def goal_summary(ratios: Sequence[Ratios]) -> str:
    def levels(pick: str, goal: float, at_most: bool) -> str:
        parts = []
        for r in ratios:
            value: float | None = getattr(r, pick)
            parts.append(f"{r.conns} conns {fmt_ratio(value)} {verdict(value, goal, at_most)}")
        return "; ".join(parts)

    at_goal = [r for r in ratios if r.conns == GOAL_RPS_CONNS]
    rps_line = (
        f"{fmt_ratio(at_goal[0].rps_vs_protocol)}, "
        f"{verdict(at_goal[0].rps_vs_protocol, GOAL_RPS_VS_PROTOCOL, at_most=False)}"
        if at_goal
        else f"not measured (no {GOAL_RPS_CONNS}-connection run)"
    )
    baseline = (
        [
            f"- socketeer server CPU per request <= {GOAL_CPU_VS_BASELINE}x the earlier "
            f"socketeer (`--baseline`) in the same run: "
            f"{levels('cpu_vs_baseline', GOAL_CPU_VS_BASELINE, True)} (the earlier one against "
            "the uvloop Protocol: "
            + "; ".join(f"{r.conns} conns {fmt_ratio(r.baseline_cpu_vs_protocol)}" for r in ratios)
            + ")."
        ]
        if any(r.cpu_vs_baseline is not None for r in ratios)
        else []
    )
    return "\n".join(
        [
            *baseline,
            f"- socketeer server CPU per request <= {GOAL_CPU_VS_PROTOCOL}x the uvloop Protocol "
            f"echo: {levels('cpu_vs_protocol', GOAL_CPU_VS_PROTOCOL, True)}.",
            f"- socketeer server CPU per request <= {GOAL_CPU_VS_THREADING}x ThreadingTCPServer: "
            f"{levels('cpu_vs_threading', GOAL_CPU_VS_THREADING, True)}.",
            f"- socketeer req/s >= {GOAL_RPS_VS_PROTOCOL}x the uvloop Protocol echo at "
            f"{GOAL_RPS_CONNS} connections: {rps_line}.",
        ]
    )


def saturation_caveat(results: Results) -> list[str]:
    pair = [("socketeer", GOAL_RPS_CONNS), ("protocol", GOAL_RPS_CONNS)]
    if not all(key in results for key in pair):
        return []
    busy = [median(results[key], "loadgen_cpu_util") for key in pair]
    if max(busy) < 0.95:
        return []
    return [
        f"- Caveat: at {GOAL_RPS_CONNS} connections the load generator was {busy[0]:.0%} busy "
        f"against socketeer and {busy[1]:.0%} against the uvloop Protocol echo, so req/s there "
        "is bounded by the client as much as by the server; server CPU per request is the "
        "sharper comparison."
    ]


def render(
    command: str,
    started: datetime.datetime,
    elapsed: float,
    facts: dict[str, str],
    loads: tuple[str, str],
    args: argparse.Namespace,
    results: Results,
    servers: Sequence[ServerSpec],
    conns: Sequence[int],
    budget: NoiseBudget,
) -> str:
    ratios = compute_ratios(results, conns)
    have_goals = "socketeer" in {s.key for s in servers}
    kept = [float(r["other_cpu_util"]) for rounds in results.values() for r in rounds]
    parts = [
        *head("Echo benchmark", "echo.py", command, started, elapsed, loads, facts),
        "## Method",
        "",
        f"- Each server runs pinned to CPU {SERVER_CPU}; the load generator "
        f"(`benchmarks/loadgen.py`) runs pinned to CPU {CLIENT_CPU}, as a separate process "
        "on uvloop with asyncio Protocol clients. Only 127.0.0.1 is used.",
        f"- Every connection sends one {args.size}-byte message in a 4-byte big-endian length "
        "frame, waits for the whole echo, checks it byte for byte (each message carries the "
        "connection's random payload and a sequence number), and sends the next (closed loop).",
        f"- Per measurement: {args.warmup:g} s warm-up, then {args.seconds:g} s measured. "
        "Latency is from the client's write to the last byte of the echo. Server CPU is "
        "utime+stime of the server process (all threads) from /proc/PID/stat, read at the "
        "start and end of the measured window (10 ms ticks), divided by the requests "
        "completed in it.",
        f"- {args.rounds} rounds, interleaved (every server and concurrency in round 1, then "
        "round 2, ...), each server started fresh per round; tables show the median of the "
        "rounds for each figure separately.",
        f"- {noise_method(args, budget, kept)}",
        "- Servers: socketeer is `python -m socketeer serve echo 127.0.0.1:0 --framing length "
        "--quiet` (uvloop). The anchors are in `benchmarks/echo_servers.py`: (a) "
        "`socketserver.ThreadingTCPServer`, a thread per connection reading the header and "
        "body through `rfile` and writing header+body; (b) a hand-written `asyncio.Protocol` "
        "frame parser on uvloop; (c) asyncio streams (`readexactly`) on asyncio's default loop.",
        "",
        f"## Results (median of {args.rounds} rounds)",
        "",
        results_table(results, servers, conns),
        "",
        "Medians over the rounds. CPU busy is CPU time over wall time in the measured window "
        '(100% is one core); "in kernel" is the server\'s stime share of its CPU time. A load '
        "generator at or near 100% means that row's req/s and latency are bounded by the "
        'client, not the server. "Other" is the CPU time everything else on the machine '
        "used in the window (from /proc/stat): well above 0% means the server and the load "
        "generator had to share their CPUs, which lowers req/s and raises latency far more "
        "than it moves CPU per request.",
        "",
        detail_table(results, servers, conns),
        "",
    ]
    if have_goals:
        parts += [
            "## socketeer against the anchors",
            "",
            "Ratios of the medians above (socketeer / anchor). For CPU per request lower is "
            "better; for req/s higher is better. The last column is the hand-written uvloop "
            "Protocol's own CPU per request over ThreadingTCPServer's: how far below the "
            "threaded server an event-loop echo gets on this machine at all.",
            "",
            ratio_table(ratios),
            "",
            "## Goals",
            "",
            "These are goals, not assertions; the figures are only what this run measured.",
            "",
            goal_summary(ratios),
            *saturation_caveat(results),
            "",
        ]
    return "\n".join(parts)


# Main -----------------------------------------------------------------------------------


def parse_conns(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("connection counts must be positive")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=parse_conns, default=[1, 10, 100])
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring")
    parser.add_argument("--size", type=int, default=1024, help="message bytes")
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_KEYS),
        help=f"comma-separated subset of {','.join(SERVER_KEYS)}",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also measure an earlier socketeer: the src/ directory of another checkout",
    )
    add_noise_options(parser, budget=90.0)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write every round's raw figures here")
    args = parser.parse_args(argv)
    chosen = [key.strip() for key in args.servers.split(",") if key.strip()]
    unknown = sorted(set(chosen) - set(SERVER_KEYS))
    if unknown or not chosen:
        parser.error(f"--servers: unknown {unknown}; choose from {', '.join(SERVER_KEYS)}")
    args.server_specs = [spec for spec in SERVERS if spec.key in chosen]
    if args.baseline is not None:
        if not (args.baseline / "socketeer" / "__init__.py").is_file():
            parser.error(f"--baseline: {args.baseline} holds no socketeer package")
        socketeer = SERVERS[0].command[1:]
        command = ("env", f"PYTHONPATH={args.baseline.resolve()}", PY, *socketeer)
        args.server_specs.insert(1, ServerSpec("baseline", "socketeer before (baseline)", command))
    if args.rounds < 1 or args.seconds <= 0 or args.size < 8 or args.retries < 0:
        parser.error("--rounds and --seconds must be positive and --size at least 8")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/echo.py", *given])
    problem = usable_cpus_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    pin_self()
    servers: list[ServerSpec] = args.server_specs
    conns: list[int] = args.conns
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    t0 = time.monotonic()
    results: Results = {(spec.key, n): [] for spec in servers for n in conns}
    budget = NoiseBudget.from_args(args)
    try:
        for round_no in range(1, args.rounds + 1):
            for spec in servers:
                with running(spec) as server:
                    for n in conns:
                        label = f"round {round_no}/{args.rounds} {spec.label:>24} {n:>4} conns"
                        results[spec.key, n].append(measure(server, n, args, label, budget))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t0
    report = render(
        command,
        started,
        elapsed,
        echo_facts(),
        (load_before, load_average()),
        args,
        results,
        servers,
        conns,
        budget,
    )
    print(report)
    if args.out:
        write_report(args.out, report)
    if args.json:
        raw = [
            {"server": key, "conns": n, "round": i + 1, **figures}
            for (key, n), rounds in results.items()
            for i, figures in enumerate(rounds)
        ]
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
