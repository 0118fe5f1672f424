"""TFTP benchmark: socketeer's TFTP server against tftpd-hpa's in.tftpd, with curl and atftp.

    python benchmarks/tftp.py [--size 256M] [--rounds 3] [--tmp /dev/shm]
                              [--out docs/tftp-benchmarks.md]

Needs ``curl``, ``atftp``, ``in.tftpd`` (tftpd-hpa), ``taskset``, root (``in.tftpd
-s`` chroots) and two usable CPUs.

One file of ``--size`` random bytes is made in a fresh directory under
``--tmp`` (a tmpfs) and served by ``socketeer serve tftp DIR
udp://127.0.0.1:PORT`` and by ``in.tftpd -L -a 127.0.0.1:PORT -u root -p -s
DIR``, each pinned to CPU 0 and started by this runner in the foreground, and
ended by its PID.  Each is downloaded from, pinned to CPU 1, by

- ``curl -s -S -o OUT --tftp-blksize 1428 tftp://127.0.0.1:PORT/FILE``,
- ``atftp --option "blksize 1428" -g -r FILE -l OUT 127.0.0.1 PORT``,
- the same with ``--option "windowsize 16"`` as well.

Each download is timed from spawning the client to its exit, its SHA-256 is
compared with the source's (a difference fails the run), and the copy is
removed.  The server's CPU seconds are read from /proc before and after
(and of its children, read while they live: in.tftpd forks one per transfer).
Figures are medians over ``--rounds``; the order of the servers alternates
from round to round.  Before each measurement the runner waits (bounded) for
a quiet machine and repeats one disturbed by other processes (bounded).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from files import SOURCE_NAME, Workspace, end_process, filesystem_type, spawn, workspace
from machine import (
    CLIENT_CPU,
    SERVER_CPU,
    BenchmarkError,
    NoiseBudget,
    add_noise_options,
    cpu_counters,
    load_average,
    machine_facts,
    noise_method,
    pin_self,
    pinned,
    process_cpu_seconds,
    quietest,
    usable_cpus_problem,
    user_system_seconds,
)
from report import head, spread, table, write_report

HERE = Path(__file__).resolve().parent
MB = 1_000_000
CHUNK = 16 * 1024 * 1024
START_TIMEOUT = 10.0  # seconds for a server to bind its port
SAMPLE_INTERVAL = 0.02  # seconds between readings of a server's children's CPU time
MIN_RATE = 1 * MB  # a download slower than this (bytes/s) counts as hung
BLKSIZE = 1428
WINDOWSIZE = 16

# Goals for socketeer, stated next to the figures.
GOAL_SAME_OPTIONS = 1.0
GOAL_WINDOWED = 3.0

SOCKETEER, TFTPD = "socketeer", "tftpd-hpa"
SERVERS = (SOCKETEER, TFTPD)


@dataclass(frozen=True)
class Case:
    """One client and the options it asks for."""

    key: str
    label: str


CASES = (
    Case("curl", f"curl --tftp-blksize {BLKSIZE}"),
    Case("atftp", f'atftp --option "blksize {BLKSIZE}"'),
    Case("atftp-w16", f'atftp --option "blksize {BLKSIZE}" --option "windowsize {WINDOWSIZE}"'),
)


@dataclass(frozen=True)
class Sample:
    """One download: its wall time, the server's CPU seconds, and others' CPU use."""

    seconds: float
    server_cpu: float
    client_cpu: float
    other_cpu: float  # CPUs' worth of user+system time that was not ours


Results = dict[tuple[str, str], list[Sample]]


# Sizes, files and ports -----------------------------------------------------------------


def parse_size(text: str) -> int:
    """``256M``, ``16M``, ``1G``, ``4096`` (K, M and G are powers of 1024) as bytes."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper()
    scale = units.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in units else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M)")
    return int(digits) * scale


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    """Whether some socket is bound to 127.0.0.1:``port`` (from /proc/net/udp)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as udp:
        return any(line.split()[1] == wanted for line in list(udp)[1:])


# Servers --------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The PIDs of process ``pid``'s children (from /proc/PID/task/*/children)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


class ServerCpu:
    """CPU seconds of a server and of the children it forks, sampled while a client runs.

    in.tftpd forks one child per transfer and lets the kernel reap it (its
    CPU time never reaches the parent's counters), so each child's counters
    are read every SAMPLE_INTERVAL while it lives, keeping the last reading:
    up to one interval of a child's CPU time at its end is missed.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = process_cpu_seconds(pid)
        self.seen: dict[int, float] = {}
        self.sample()

    def sample(self) -> None:
        for child in children(self.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.seen[child] = process_cpu_seconds(child)

    def used(self) -> float:
        self.sample()
        return process_cpu_seconds(self.pid) - self.start + sum(self.seen.values())


class Server:
    """A TFTP server we started, pinned to the server CPU, serving ``served``."""

    def __init__(self, name: str, served: Path) -> None:
        self.name = name
        self.port = free_udp_port()
        if name == SOCKETEER:
            program = str(Path(sys.executable).with_name("socketeer"))
            command = [program, "serve", "tftp", str(served), f"udp://127.0.0.1:{self.port}"]
        else:
            in_tftpd = shutil.which("in.tftpd") or "in.tftpd"
            address = f"127.0.0.1:{self.port}"
            command = [in_tftpd, "-L", "-a", address, "-u", "root", "-p", "-s", str(served)]
        self.proc = spawn(
            pinned(command, SERVER_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not udp_bound(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchmarkError(f"{name} did not bind 127.0.0.1:{self.port}")
            time.sleep(0.05)

    def cpu(self) -> ServerCpu:
        """A reader of the CPU time the server (and its children) use from now on."""
        if self.proc.poll() is not None:
            raise BenchmarkError(f"{self.name} died ({self.proc.returncode})")
        return ServerCpu(self.proc.pid)

    def stop(self) -> None:
        end_process(self.proc)


@contextlib.contextmanager
def serving(name: str, served: Path) -> Iterator[Server]:
    server = Server(name, served)
    try:
        yield server
    finally:
        server.stop()


# Measurements ---------------------------------------------------------------------------


def wait_sampling(
    proc: subprocess.Popen[bytes], timeout: float, what: str, sample: Callable[[], None]
) -> tuple[int, float, float]:
    """Wait for ``proc`` to exit, calling ``sample`` every SAMPLE_INTERVAL meanwhile.

    Returns its exit code, its CPU seconds and the monotonic time it ended.
    """
    pidfd = os.pidfd_open(proc.pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            readable, _, _ = select.select([pidfd], [], [], SAMPLE_INTERVAL)
            ended = time.monotonic()
            if readable:
                break
            if ended > deadline:
                end_process(proc)
                raise BenchmarkError(f"{what} did not finish in {timeout:g}s")
            sample()
    finally:
        os.close(pidfd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, ended


def client_command(case: str, port: int, out: Path) -> list[str]:
    if case == "curl":
        url = f"tftp://127.0.0.1:{port}/{SOURCE_NAME}"
        return ["curl", "-s", "-S", "-o", str(out), "--tftp-blksize", str(BLKSIZE), url]
    options = ["--option", f"blksize {BLKSIZE}"]
    if case == "atftp-w16":
        options += ["--option", f"windowsize {WINDOWSIZE}"]
    return ["atftp", *options, "-g", "-r", SOURCE_NAME, "-l", str(out), "127.0.0.1", str(port)]


def download(server: Server, case: str, received: Path, size: int, sha256: str) -> Sample:
    """One download, timed from spawning the client to its exit, checked by SHA-256."""
    out = received / f"{server.name}-{case}.bin"
    what = f"{case} from {server.name}"
    server_cpu = server.cpu()
    machine_before = cpu_counters()
    started = time.monotonic()
    proc = spawn(
        pinned(client_command(case, server.port, out), CLIENT_CPU),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        code, client_seconds, ended = wait_sampling(
            proc, 30.0 + size / MIN_RATE, what, server_cpu.sample
        )
    finally:
        end_process(proc)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    server_seconds = server_cpu.used()
    machine_after = cpu_counters()
    wall = ended - started
    try:
        if code != 0:
            raise BenchmarkError(f"{what} failed ({code}): {stderr[-500:]}")
        if not out.exists() or sha256_of(out) != sha256:
            raise BenchmarkError(f"{what}: the copy is not byte-identical to the source")
    finally:
        out.unlink(missing_ok=True)
    others = user_system_seconds(machine_before["cpu"], machine_after["cpu"])
    others = max(0.0, others - server_seconds - client_seconds)
    return Sample(wall, server_seconds, client_seconds, others / wall if wall > 0 else 0.0)


def run_round(
    space: Workspace,
    args: argparse.Namespace,
    results: Results,
    budget: NoiseBudget,
    round_no: int,
) -> None:
    """Every case against both servers, the server that goes first alternating by round."""
    turn = (round_no - 1) % len(SERVERS)
    for name in SERVERS[turn:] + SERVERS[:turn]:
        with serving(name, space.served) as server:
            for case in CASES:

                def show(sample: Sample, noisy: bool, case: Case = case, name: str = name) -> None:
                    note = " (noisy)" if noisy else ""
                    print(
                        f"  round {round_no}: {name:9} {case.key:9} {sample.seconds:7.2f} s "
                        f"{args.size / MB / sample.seconds:7.1f} MB/s server CPU "
                        f"{sample.server_cpu:6.2f} s other {sample.other_cpu:.2f}{note}",
                        file=sys.stderr,
                    )

                def measure(server: Server = server, case: Case = case) -> Sample:
                    return download(server, case.key, space.received, args.size, space.sha256)

                sample, _ = quietest(
                    measure, lambda s: s.other_cpu, budget, args.noisy, args.retries, show
                )
                results.setdefault((name, case.key), []).append(sample)


# The report -----------------------------------------------------------------------------


def median_seconds(results: Results, name: str, case: str) -> float:
    return statistics.median(s.seconds for s in results[(name, case)])


def results_table(results: Results, size: int) -> str:
    rows = []
    for case in CASES:
        for name in SERVERS:
            samples = results[(name, case.key)]
            seconds = statistics.median(s.seconds for s in samples)
            rows.append(
                [
                    case.label,
                    name,
                    f"{seconds:.2f}",
                    spread((s.seconds for s in samples), ".2f"),
                    f"{size / MB / seconds:,.1f}",
                    f"{statistics.median(s.server_cpu for s in samples):.2f}",
                    f"{statistics.median(s.client_cpu for s in samples):.2f}",
                ]
            )
    return table(
        [
            "client and options",
            "server",
            "wall s",
            "wall s, min to max",
            "MB/s",
            "server CPU s",
            "client CPU s",
        ],
        rows,
        align="llrrrrr",
    )


def goal_rows(results: Results) -> list[list[object]]:
    def rate_ratio(ours: str, theirs: str) -> float:
        return median_seconds(results, TFTPD, theirs) / median_seconds(results, SOCKETEER, ours)

    items = [
        (f"{case.label}: socketeer / tftpd-hpa", rate_ratio(case.key, case.key), GOAL_SAME_OPTIONS)
        for case in CASES
    ]
    items.append(
        (
            f"socketeer with windowsize {WINDOWSIZE} / tftpd-hpa without (atftp, "
            f"blksize {BLKSIZE})",
            rate_ratio("atftp-w16", "atftp"),
            GOAL_WINDOWED,
        )
    )
    return [
        [text, f"{value:.2f}x", f">= {goal:g}x", "met" if value >= goal else "missed"]
        for text, value, goal in items
    ]


def render(
    command: str,
    started: datetime.datetime,
    elapsed: float,
    loads: tuple[str, str],
    args: argparse.Namespace,
    results: Results,
    budget: NoiseBudget,
) -> str:
    kept = [s.other_cpu for samples in results.values() for s in samples]
    size_mib = args.size / 1024**2
    tftpd_version = subprocess.run(
        ["in.tftpd", "-V"], capture_output=True, text=True, timeout=10, check=False
    )
    facts = {
        **machine_facts(),
        "tftpd-hpa": (tftpd_version.stdout + tftpd_version.stderr).strip(),
        "tmp": f"{args.tmp} ({filesystem_type(args.tmp)})",
    }
    parts = [
        *head("TFTP benchmark", "tftp.py", command, started, elapsed, loads, facts),
        "## Method",
        "",
        f"- One file of {size_mib:g} MiB ({args.size:,} bytes) of random bytes in a fresh "
        f"directory on {args.tmp}, served over 127.0.0.1 by `socketeer serve tftp DIR "
        "udp://127.0.0.1:PORT` and by `in.tftpd -L -a 127.0.0.1:PORT -u root -p -s DIR` "
        "(tftpd-hpa, in the foreground; it forks one child per transfer). Each server is "
        f"pinned to CPU {SERVER_CPU}, each client to CPU {CLIENT_CPU} (`taskset`).",
        f"- Clients: `curl -s -S -o OUT --tftp-blksize {BLKSIZE} tftp://127.0.0.1:PORT/FILE`; "
        f'`atftp --option "blksize {BLKSIZE}" -g -r FILE -l OUT 127.0.0.1 PORT`; and the '
        f'same with `--option "windowsize {WINDOWSIZE}"`.',
        f"- This tftpd-hpa does not honour `windowsize`: its OACK to atftp's request for "
        f'"blksize {BLKSIZE}, windowsize {WINDOWSIZE}" names blksize alone, so against it the '
        "windowed row is a lockstep transfer (one ACK per block) like the row above it; "
        "socketeer acknowledges the window and sends 16 blocks per ACK.",
        "- Wall time runs from spawning the client to its exit. Server CPU is the server "
        "process's utime+stime over the download plus that of its children (in.tftpd forks "
        "one per transfer and they are reaped by the kernel, so each child's counters are "
        f"read every {SAMPLE_INTERVAL * 1000:g} ms while it lives and the last reading kept: "
        "up to that much of a child's CPU at its very end is missed); softirq time, where "
        "loopback UDP is processed, is in neither. Every copy's SHA-256 is compared with "
        "the source's (a difference fails the run), then the copy is removed.",
        f"- {args.rounds} round(s); in each, both servers are started fresh and every client "
        "runs against each, the server that goes first alternating. Figures are medians "
        "over the rounds; MB = 10^6 bytes.",
        f"- {noise_method(args, budget, kept)}",
        "",
        "## Results",
        "",
        results_table(results, args.size),
        "",
        "## Goals",
        "",
        "Ratios of median rates (tftpd-hpa's median wall time over socketeer's). These are "
        "goals, not assertions; the figures are only what this run measured.",
        "",
        table(["ratio", "value", "goal", ""], goal_rows(results), align="lrrl"),
        "",
    ]
    return "\n".join(parts)


# Main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--size", type=parse_size, default=parse_size("256M"), help="file size (256M, 16M, ...)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"), help="a tmpfs directory")
    add_noise_options(parser, budget=300.0)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.retries < 0:
        parser.error("--rounds must be positive, --retries not negative")
    return args


def preflight(args: argparse.Namespace) -> str | None:
    """What keeps this run from measuring what it claims, if anything."""
    missing = [tool for tool in ("curl", "atftp", "in.tftpd", "taskset") if not shutil.which(tool)]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install -y curl atftp tftpd-hpa)"
    if not Path(sys.executable).with_name("socketeer").exists():
        return "no socketeer beside this Python; run it from the project's venv"
    if os.geteuid() != 0:
        return "in.tftpd -s chroots, which needs root"
    if problem := usable_cpus_problem():
        return problem
    if filesystem_type(args.tmp) != "tmpfs":
        return f"{args.tmp} is not a tmpfs ({filesystem_type(args.tmp)}); pass --tmp"
    if shutil.disk_usage(args.tmp).free < 3 * args.size:
        return f"{args.tmp} needs {3 * args.size // MB} MB free"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/tftp.py", *given])
    problem = preflight(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    pin_self()
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    t0 = time.monotonic()
    results: Results = {}
    budget = NoiseBudget.from_args(args)
    try:
        with workspace(args.tmp, args.size) as space:
            for round_no in range(1, args.rounds + 1):
                run_round(space, args, results, budget, round_no)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = render(
        command,
        started,
        time.monotonic() - t0,
        (load_before, load_average()),
        args,
        results,
        budget,
    )
    print(report)
    if args.out:
        write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
