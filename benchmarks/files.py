"""Files benchmark: socketeer's file transfers against socat, http.server, rsync and tar | nc.

    python benchmarks/files.py [--mib 1024] [--rounds 5] [--placement both]
                               [--tmp /dev/shm] [--only KEY,...]
                               [--tree-files 5000] [--tree-size 4096]
                               [--out docs/files-benchmarks.md] [--json raw.json]

Needs ``socat``, ``curl``, ``rsync``, ``nc``, ``ss`` and ``taskset``
(``apt-get install -y socat curl rsync netcat-openbsd iproute2``), two usable
CPUs, and four times ``--mib`` free on the tmpfs.

One file of ``--mib`` MiB of random bytes is created once in a fresh
directory under ``--tmp`` (a tmpfs, so that no disk is measured; the
runner refuses anything else) and every transfer writes a new file in that
directory too.  All traffic stays on 127.0.0.1.  Measured in each round:

- a raw ``socat`` pipe (``socat -u OPEN:FILE TCP-LISTEN:0`` to ``socat -u
  TCP:... OPEN:DEST,creat,trunc``), with socat's default 8 KiB blocks and
  with ``-b 1048576``;
- ``python -m http.server`` serving the directory, fetched by ``curl -s -o``;
- socketeer's files service (``benchmarks/files_server.py``: asyncio's own
  loop, zero-copy ``sendfile`` for downloads) with ``FilesClient``
  (``benchmarks/files_client.py``): a download verified with BLAKE3 (the
  default) right after the server started (its hash cache is cold: the
  server hashes the file while sending it), the same download again (warm:
  the hash comes from the cache), a download with verification off, uploads
  with verification off and on, and a warm download and an upload verified
  with SHA-256 (``--hash sha256``);
- a tree of ``--tree-files`` small files (see ``files_trees.py``): ``rsync
  -r`` from and to an rsync daemon, ``tar | nc``, and ``socketeer get -r`` /
  ``put -r``;
- what one core manages alone: ``sha256sum FILE``, Python's
  ``hashlib.sha256`` over the file read in 1 MiB chunks, BLAKE3 over its
  bytes in memory, and writing a new file of the same size to the tmpfs
  (1 MiB writes).

Placement ``pinned`` runs each server on CPU 0 and each client on CPU 1
(``taskset``); ``unpinned`` lets the kernel place them; ``both`` measures
both, back to back in every round, and uses unpinned for the ratios only if
it was faster for every client/server pair.  Which placement goes first
alternates, and the order of socat, socat -b, http.server and socketeer
turns by one each round, so that none of them always comes first.  The one-core references always
run on CPU 1.  Servers are started fresh every round and ended by their PID
(SIGTERM, then SIGKILL after a timeout); every wait has a timeout.  Each
transfer's result is compared byte for byte with the source, then removed,
and the whole directory is removed at the end.

Figures are medians over the rounds, with the spread (min to max).  The
machine may be shared: before each measurement the runner waits (bounded)
for a quiet machine, and a measurement during which other processes used
more than ``--noisy`` of a CPU is repeated (bounded), keeping the quietest.
The goals printed next to the figures are goals, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import blake3

from files_trees import Tree, free_port, make_tree, rsync_config, same_tree, scratch, wait_listening
from machine import (
    CLIENT_CPU,
    SERVER_CPU,
    BenchmarkError,
    NoiseBudget,
    add_noise_options,
    busy_fraction,
    cpu_counters,
    cpu_model,
    load_average,
    machine_facts,
    noise_method,
    pinned,
    process_cpu_seconds,
    quietest,
    usable_cpus_problem,
    user_system_seconds,
)
from report import head, spread, table, write_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
#: Where the Pythons started cache their bytecode (see python_env).
PYCACHE = Path(tempfile.gettempdir()) / "socketeer-files-bench-pycache"
MIB = 1024 * 1024
GIB = 1024 * MIB
START_TIMEOUT = 20.0  # seconds for a server to say it listens
STOP_TIMEOUT = 10.0  # seconds for a process to end after SIGTERM
MIN_RATE = 10 * MIB  # a transfer slower than this (bytes/s) counts as hung
COMPARE_CHUNK = 16 * MIB
SOURCE_NAME = "source.bin"
UPLOAD_NAME = "upload.bin"
PARTIAL_SUFFIX = ".socketeer-part"

# Goals for socketeer, stated next to the figures.
GOAL_DOWNLOAD_VS_PIPE = 0.8
GOAL_VERIFIED_VS_SHA256 = 0.9
GOAL_UPLOAD_VS_DOWNLOAD = 0.8
GOAL_VERIFIED_VS_UNVERIFIED = 0.85
GOAL_TREE_VS_RSYNC = 0.5  # at most twice rsync's time

PINNED, UNPINNED, ONE_CORE = "pinned", "unpinned", "one core"


@dataclass(frozen=True)
class Row:
    """One thing measured: a transfer between two processes, or one process alone."""

    key: str
    label: str
    paired: bool  # a client and a server (placement matters), or one process alone


ROWS = (
    Row("socat", "socat pipe, default 8 KiB blocks", True),
    Row("socat-1m", "socat pipe, -b 1048576", True),
    Row("http", "http.server + curl", True),
    Row("down-off", "socketeer download, verify off", True),
    Row("down-cold", "socketeer download, BLAKE3, cold hash cache", True),
    Row("down-warm", "socketeer download, BLAKE3, warm hash cache", True),
    Row("down-sha", "socketeer download, SHA-256, warm hash cache", True),
    Row("up-off", "socketeer upload, verify off", True),
    Row("up-on", "socketeer upload, BLAKE3", True),
    Row("up-sha", "socketeer upload, SHA-256", True),
    Row("tree-rsync-get", "tree: rsync -r from an rsync daemon", True),
    Row("tree-rsync-put", "tree: rsync -r to an rsync daemon", True),
    Row("tree-tar", "tree: tar -c piped to nc, nc -l piped to tar -x", True),
    Row("tree-get", "tree: socketeer get -r", True),
    Row("tree-put", "tree: socketeer put -r", True),
    Row("startup", "socketeer --version (the command starting alone)", False),
    Row("sha256sum", "sha256sum FILE", False),
    Row("hashlib", "hashlib.sha256, 1 MiB reads", False),
    Row("blake3", "BLAKE3 alone (blake3 package), a 1 MiB piece in cache", False),
    Row("write", "write a new file to the tmpfs, 1 MiB writes", False),
)
ROW = {row.key: row for row in ROWS}
TREE_KEYS = ("tree-rsync-get", "tree-rsync-put", "tree-tar", "tree-get", "tree-put", "startup")
BIG_KEYS = tuple(row.key for row in ROWS if row.key not in TREE_KEYS)
VERIFIED = {"down-cold": "blake3", "down-warm": "blake3", "up-on": "blake3"}
VERIFIED |= {"down-sha": "sha256", "up-sha": "sha256"}


@dataclass(frozen=True)
class Sample:
    """One measurement: timed seconds and who used the CPUs meanwhile."""

    seconds: float
    nbytes: int
    server_cpu: float | None  # CPU seconds (utime+stime, all threads), None if no server
    client_cpu: float
    cpu0_busy: float  # fraction of CPU 0 not idle (softirq included)
    cpu1_busy: float
    other_cpu: float  # CPUs' worth of user+system time that was not ours
    attempts: int = 1

    @property
    def mib_s(self) -> float:
        return self.nbytes / MIB / self.seconds

    @classmethod
    def of(
        cls, seconds: float, nbytes: int, server_cpu: float | None, client_cpu: float, w: Window
    ) -> Sample:
        return cls(seconds, nbytes, server_cpu, client_cpu, w.cpu0_busy, w.cpu1_busy, w.other_cpu)


Results = dict[tuple[str, str], list[Sample]]


# CPU accounting -------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """How busy the machine was while one measurement ran."""

    cpu0_busy: float
    cpu1_busy: float
    other_cpu: float


def window(
    before: dict[str, list[int]], after: dict[str, list[int]], wall: float, ours: float
) -> Window:
    """Each CPU's busy share, and other processes' CPU use (in CPUs) over ``wall`` seconds.

    ``ours`` is the CPU time the measured processes used in the window.
    """
    others = max(0.0, user_system_seconds(before["cpu"], after["cpu"]) - ours)
    return Window(
        busy_fraction(before["cpu0"], after["cpu0"]),
        busy_fraction(before["cpu1"], after["cpu1"]),
        others / wall if wall > 0 else 0.0,
    )


# Processes ------------------------------------------------------------------------------


def cpu_list(placement: str, cpu: int) -> str:
    """The CPUs a process may use: ``cpu`` alone when pinned, else every CPU we may use."""
    if placement == UNPINNED:
        return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    return str(cpu)


def placed(command: Sequence[str], placement: str, cpu: int) -> list[str]:
    """``command`` run by taskset on its CPUs (taskset execs: the PID stays the same)."""
    return pinned(command, cpu_list(placement, cpu))


def transfer_timeout(nbytes: int) -> float:
    return 30.0 + nbytes / MIN_RATE


def python_env() -> dict[str, str]:
    """The environment of every Python started: bytecode cached (in a directory of its
    own), as for an installed package, whatever PYTHONDONTWRITEBYTECODE says here."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPYCACHEPREFIX=str(PYCACHE))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_bytecode() -> None:
    """Compile socketeer once, so that no measured start compiles it."""
    command = [PY, "-m", "compileall", "-q", str(ROOT / "src" / "socketeer")]
    subprocess.run(command, env=python_env(), check=True, stdout=subprocess.DEVNULL, timeout=300)


def spawn(command: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    env = python_env()
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=ROOT, env=env, **kwargs)


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM our process by its PID, SIGKILL it if it is not gone in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float, what: str) -> tuple[int, float, float]:
    """Wait for ``proc`` to exit: (exit code, its CPU seconds, monotonic time it ended).

    A pidfd tells the moment it exits (Popen.wait polls, which would blur the
    timing); wait4 then reaps it and gives its resource usage.
    """
    pidfd = os.pidfd_open(proc.pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        ended = time.monotonic()
    finally:
        os.close(pidfd)
    if not readable:
        end_process(proc)
        raise BenchmarkError(f"{what} did not finish in {timeout:g}s")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, ended


def read_until(stream: IO[bytes], pattern: re.Pattern[str], what: str) -> re.Match[str]:
    """Read ``stream`` (a pipe) until ``pattern`` matches a line, within START_TIMEOUT."""
    fd = stream.fileno()
    deadline = time.monotonic() + START_TIMEOUT
    seen = b""
    while True:
        for line in seen.decode(errors="replace").splitlines():
            match = pattern.search(line)
            if match:
                return match
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchmarkError(f"{what} did not say where it listens in time: {seen[-500:]!r}")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BenchmarkError(f"{what} exited before listening: {seen[-500:]!r}")
            seen += chunk


class Listener:
    """A long-running server process we started; ended by its PID and nothing else."""

    def __init__(self, command: list[str], ready: re.Pattern[str], what: str) -> None:
        self.what = what
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = spawn(command, stdout=subprocess.PIPE, stderr=self._stderr)
        self.pid = self.proc.pid
        try:
            assert self.proc.stdout is not None
            self.port = int(read_until(self.proc.stdout, ready, what).group(1))
        except BaseException:
            self.stop()
            raise

    def cpu_seconds(self) -> float:
        if self.proc.poll() is not None:
            raise BenchmarkError(f"{self.what} died: {self.stderr_text()}")
        return process_cpu_seconds(self.pid)

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self) -> None:
        end_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.returncode not in (0, -signal.SIGTERM):
            print(f"  note: {self.what} exited with {self.proc.returncode}", file=sys.stderr)
        self._stderr.close()


@contextlib.contextmanager
def listening(command: list[str], ready: str, what: str) -> Iterator[Listener]:
    server = Listener(command, re.compile(ready), what)
    try:
        yield server
    finally:
        server.stop()


# The workspace --------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """The source file (in ``served``, the servers' directory) and where results go."""

    served: Path
    received: Path
    source: Path
    size: int
    digests: dict[str, str]  # the source's hash, by the hash's name
    tree: Tree | None

    @property
    def sha256(self) -> str:
        return self.digests["sha256"]


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts)."""
    best, kind = "", "?"
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1]
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


@contextlib.contextmanager
def workspace(tmp: Path, size: int, tree: tuple[int, int] | None = None) -> Iterator[Workspace]:
    """A fresh directory under ``tmp`` with the random source file and ``tree``
    (files, bytes each) if wanted; removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="socketeer-files-bench-", dir=tmp))
    try:
        served, received = top / "served", top / "received"
        served.mkdir()
        received.mkdir()
        source = served / SOURCE_NAME
        digest, fast = hashlib.sha256(), blake3.blake3()
        with open(source, "wb") as file:
            left = size
            while left > 0:
                block = os.urandom(min(COMPARE_CHUNK, left))
                file.write(block)
                digest.update(block)
                fast.update(block)
                left -= len(block)
        digests = {"sha256": digest.hexdigest(), "blake3": fast.hexdigest()}
        made = make_tree(served, *tree) if tree else None
        yield Workspace(served, received, source, size, digests, made)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def check_copy(space: Workspace, copy: Path, what: str) -> None:
    """``copy`` must hold exactly the source's bytes; it is removed either way."""
    try:
        if copy.stat().st_size != space.size:
            raise BenchmarkError(f"{what}: {copy.stat().st_size} bytes, not {space.size}")
        with open(space.source, "rb") as a, open(copy, "rb") as b:
            while chunk := a.read(COMPARE_CHUNK):
                if b.read(COMPARE_CHUNK) != chunk:
                    raise BenchmarkError(f"{what}: the copy differs from the source")
    except FileNotFoundError:
        raise BenchmarkError(f"{what}: wrote no {copy.name}") from None
    finally:
        copy.unlink(missing_ok=True)


def remove_upload(space: Workspace) -> None:
    (space.served / UPLOAD_NAME).unlink(missing_ok=True)
    (space.served / f".{UPLOAD_NAME}{PARTIAL_SUFFIX}").unlink(missing_ok=True)


# Measurements ---------------------------------------------------------------------------


def timed_process(
    command: list[str],
    nbytes: int,
    server_cpu: Callable[[], float] | None,
    timeout: float,
    what: str,
) -> Sample:
    """Run ``command`` to its end, timed from spawn to exit (exec and connect included).

    ``server_cpu`` reads the CPU seconds of the server it talks to, if any.
    """
    server_before = server_cpu() if server_cpu is not None else 0.0
    machine_before = cpu_counters()
    started = time.monotonic()
    proc = spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        code, client_seconds, ended = wait_exit(proc, timeout, what)
    finally:
        end_process(proc)
    machine_after = cpu_counters()
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if code != 0:
        raise BenchmarkError(f"{what} failed ({code}): {stderr.strip()[-500:]}")
    server_seconds = server_cpu() - server_before if server_cpu is not None else None
    wall = ended - started
    ours = client_seconds + (server_seconds or 0.0)
    w = window(machine_before, machine_after, wall, ours)
    return Sample.of(wall, nbytes, server_seconds, client_seconds, w)


#: socat's addresses for the plain pipe: where the sender listens, how the receiver connects.
TCP_PIPE = ("TCP-LISTEN:0,bind=127.0.0.1,reuseaddr", "TCP:127.0.0.1:{port}")


def measure_socat(
    space: Workspace,
    placement: str,
    block: int | None,
    addresses: tuple[str, str] = TCP_PIPE,
    what: str = "socat",
) -> Sample:
    """socat sends the file to a socat that writes it: the kernel's pipe, no hashing.

    ``addresses``: the sender's listening address and the receiver's
    (``{port}`` is the port the sender got), TCP by default.
    """
    dest = space.received / "socat.bin"
    blocks = ["-b", str(block)] if block else []
    listen, connect = addresses
    sender = placed(
        ["socat", "-d", "-d", "-u", *blocks, f"OPEN:{space.source}", listen],
        placement,
        SERVER_CPU,
    )
    server = spawn(sender, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert server.stderr is not None
        port = read_until(server.stderr, re.compile(r"listening on .*:(\d+)$"), what).group(1)
        receiver = placed(
            ["socat", "-u", *blocks, connect.format(port=port), f"OPEN:{dest},creat,trunc"],
            placement,
            CLIENT_CPU,
        )
        sample = timed_process(
            receiver, space.size, None, transfer_timeout(space.size), f"{what} receiver"
        )
        code, server_cpu, _ = wait_exit(server, STOP_TIMEOUT, f"{what} sender")
        if code != 0:
            raise BenchmarkError(f"{what} sender exited with {code}")
    finally:
        end_process(server)
        if server.stderr is not None:
            server.stderr.close()
    check_copy(space, dest, what)
    # The sender's CPU time was counted as other processes': it is ours.
    other = max(0.0, sample.other_cpu - server_cpu / sample.seconds)
    return replace(sample, server_cpu=server_cpu, other_cpu=other)


def http_server(space: Workspace, placement: str) -> contextlib.AbstractContextManager[Listener]:
    command = placed(
        [PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(space.served), "0"],
        placement,
        SERVER_CPU,
    )
    return listening(command, r"Serving HTTP on \S+ port (\d+)", "http.server")


def measure_http(space: Workspace, placement: str, server: Listener) -> Sample:
    dest = space.received / "curl.bin"
    url = f"http://127.0.0.1:{server.port}/{SOURCE_NAME}"
    client = placed(["curl", "-s", "-S", "-f", "-o", str(dest), url], placement, CLIENT_CPU)
    sample = timed_process(
        client, space.size, server.cpu_seconds, transfer_timeout(space.size), "curl"
    )
    check_copy(space, dest, "http.server + curl")
    return sample


def files_server(space: Workspace, placement: str, token: str) -> Listener:
    command = placed(
        [PY, str(HERE / "files_server.py"), str(space.served), "--token", token],
        placement,
        SERVER_CPU,
    )
    return Listener(command, re.compile(r"listening on 127\.0\.0\.1:(\d+)"), "files server")


def run_helper(
    arguments: list[str],
    placement: str,
    server: Listener | None,
    timeout: float,
    digest: str | None = None,
) -> Sample:
    """Run ``benchmarks/files_client.py``; its own timing of the work is the figure.

    ``digest``: the hash the work must report (the source file's).
    """
    command = placed(
        [PY, str(HERE / "files_client.py"), "--hard-limit", f"{timeout:g}", *arguments],
        placement,
        CLIENT_CPU,
    )
    server_before = server.cpu_seconds() if server is not None else 0.0
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout + 10, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired as exc:  # run() has already killed it by its PID
        raise BenchmarkError(f"{shlex.join(arguments)} did not finish in time") from exc
    server_cpu = server.cpu_seconds() - server_before if server is not None else None
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchmarkError(
            f"{shlex.join(arguments)} failed ({done.returncode}): {done.stderr.strip()[-1500:]}"
        ) from None
    if digest is not None and result.get("digest") != digest:
        raise BenchmarkError(f"{shlex.join(arguments)} reported the hash {result.get('digest')}")
    seconds, client_cpu = float(result["seconds"]), float(result["cpu_seconds"])
    ours = client_cpu + (server_cpu or 0.0)
    w = window(result["machine_before"], result["machine_after"], seconds, ours)
    return Sample.of(seconds, int(result["bytes"]), server_cpu, client_cpu, w)


def measure_socketeer(
    space: Workspace, placement: str, server: Listener, key: str, token: str
) -> Sample:
    timeout = transfer_timeout(space.size)
    hashed = VERIFIED.get(key)
    verify = ["--verify", "--hash", hashed] if hashed else ["--hash", "blake3"]
    digest = space.digests[hashed] if hashed else None
    if key.startswith("down"):
        dest = space.received / "download.bin"
        arguments = ["download", str(server.port), SOURCE_NAME, str(dest), *verify]
        sample = run_helper(arguments, placement, server, timeout, digest)
        check_copy(space, dest, ROW[key].label)
    else:
        remove_upload(space)
        arguments = ["upload", str(server.port), str(space.source), UPLOAD_NAME]
        arguments += ["--token", token, *verify]
        sample = run_helper(arguments, placement, server, timeout, digest)
        check_copy(space, space.served / UPLOAD_NAME, ROW[key].label)
        remove_upload(space)
    if sample.nbytes != space.size:
        raise BenchmarkError(f"{ROW[key].label}: moved {sample.nbytes} of {space.size} bytes")
    return sample


def measure_alone(space: Workspace, key: str) -> Sample:
    """One process on CPU 1: SHA-256 of the file, or writing a file of the same size."""
    timeout = transfer_timeout(space.size)
    if key == "sha256sum":
        command = placed(["sha256sum", str(space.source)], PINNED, CLIENT_CPU)
        return timed_process(command, space.size, None, timeout, "sha256sum")
    if key == "startup":
        command = placed([PY, "-m", "socketeer", "--version"], PINNED, CLIENT_CPU)
        return timed_process(command, 1, None, START_TIMEOUT, "socketeer --version")
    if key in ("hashlib", "blake3"):
        name = "sha256" if key == "hashlib" else "blake3"
        expected = space.digests[name] if key == "hashlib" else None  # blake3: one piece
        return run_helper([name, str(space.source)], PINNED, None, timeout, expected)
    dest = space.received / "written.bin"
    try:
        return run_helper(["write", str(dest), "--size", str(space.size)], PINNED, None, timeout)
    finally:
        dest.unlink(missing_ok=True)


def measure(
    action: Callable[[], Sample], label: str, args: argparse.Namespace, budget: NoiseBudget
) -> Sample:
    """``action`` once, or again while other processes were busy and the budget allows.

    Of the attempts, the one during which other processes used the least CPU is kept.
    """

    def show(sample: Sample, noisy: bool) -> None:
        server = (
            f"server CPU {sample.server_cpu / sample.seconds:4.0%}  " if sample.server_cpu else ""
        )
        print(
            f"{label}: {sample.mib_s:7.0f} MiB/s  {sample.seconds:6.3f} s  {server}"
            f"client CPU {sample.client_cpu / sample.seconds:4.0%}  "
            f"other {sample.other_cpu:.0%}" + ("  (noisy)" if noisy else ""),
            file=sys.stderr,
            flush=True,
        )

    best, attempts = quietest(
        action, lambda sample: sample.other_cpu, budget, args.noisy, args.retries, show
    )
    return replace(best, attempts=attempts)


def run_round(
    space: Workspace,
    placement: str,
    args: argparse.Namespace,
    results: Results,
    budget: NoiseBudget,
    round_no: int,
) -> None:
    """Every client/server pair once in ``placement``.

    The order of the groups (socat, socat -b, http.server, socketeer) turns
    by one each round, so that no contender always comes first after the
    pause before a round, or always follows the same one.
    """
    prefix = f"round {round_no}/{args.rounds}"

    def record(key: str, action: Callable[[], Sample]) -> None:
        if key not in args.only:
            return
        label = f"{prefix} {placement:>8} {ROW[key].label:<48}"
        results.setdefault((key, placement), []).append(measure(action, label, args, budget))

    def socat(key: str, block: int | None) -> Callable[[], None]:
        return lambda: record(key, lambda: measure_socat(space, placement, block))

    def http() -> None:
        if "http" in args.only:
            with http_server(space, placement) as server:
                record("http", lambda: measure_http(space, placement, server))

    def socketeer() -> None:
        run_socketeer(space, placement, args, record)

    def trees() -> None:
        run_trees(space, placement, args, record)

    groups = [socat("socat", None), socat("socat-1m", MIB), http, socketeer, trees]
    turn = (round_no - 1) % len(groups)
    for group in groups[turn:] + groups[:turn]:
        group()


def run_socketeer(
    space: Workspace,
    placement: str,
    args: argparse.Namespace,
    record: Callable[[str, Callable[[], Sample]], None],
) -> None:
    """socketeer's transfers, on a fresh server: the cold download first."""
    if not args.only & {"down-cold", "down-warm", "down-sha", "down-off", "up-off", "up-on"}:
        return
    token = os.urandom(16).hex()
    servers: list[Listener] = []

    def cold() -> Sample:
        # A fresh server for every attempt: its hash cache must be empty.
        if servers:
            servers.pop().stop()
        servers.append(files_server(space, placement, token))
        return measure_socketeer(space, placement, servers[0], "down-cold", token)

    def transfer(key: str) -> Callable[[], Sample]:
        return lambda: measure_socketeer(space, placement, servers[0], key, token)

    try:
        record("down-cold", cold)
        if not servers:
            servers.append(files_server(space, placement, token))
            if "down-warm" in args.only:  # warm its hash cache, untimed
                measure_socketeer(space, placement, servers[0], "down-cold", token)
        for key in ("down-warm", "down-sha", "down-off", "up-off", "up-on", "up-sha"):
            record(key, transfer(key))
    finally:
        for server in servers:
            server.stop()


def run_trees(
    space: Workspace,
    placement: str,
    args: argparse.Namespace,
    record: Callable[[str, Callable[[], Sample]], None],
) -> None:
    """The tree, copied by rsync, by tar | nc and by socketeer, both ways where they go."""
    tree = space.tree
    if tree is None:
        return
    if args.only & {"tree-rsync-get", "tree-rsync-put"}:
        port = free_port()
        command = [
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={rsync_config(space.received, space.served)}",
            f"--port={port}",
            "--address=127.0.0.1",
            "--log-file=/dev/stdout",
        ]
        with listening(
            placed(command, placement, SERVER_CPU), r"listening on port (\d+)", "rsync daemon"
        ) as daemon:
            url = f"rsync://127.0.0.1:{daemon.port}/mod"
            record(
                "tree-rsync-get",
                lambda: copy_tree(
                    tree, placement, daemon, ["rsync", "-r", f"{url}/tree/"], space.received, "get"
                ),
            )
            record(
                "tree-rsync-put",
                lambda: copy_tree(
                    tree, placement, daemon, ["rsync", "-r"], space.served, "put", f"{url}/up/"
                ),
            )
    record("tree-tar", lambda: tar_nc(tree, placement, space.received))
    if args.only & {"tree-get", "tree-put"}:
        token = os.urandom(16).hex()
        server = files_server(space, placement, token)
        try:
            endpoint = f"127.0.0.1:{server.port}"
            get = [PY, "-m", "socketeer", "get", "-r", "-q", endpoint, "tree/"]
            put = [PY, "-m", "socketeer", "put", "-r", "-q", "--token", token]
            record(
                "tree-get",
                lambda: copy_tree(tree, placement, server, get, space.received, "get"),
            )
            record(
                "tree-put",
                lambda: copy_tree(
                    tree, placement, server, put, space.served, "put", f"{endpoint}", "up"
                ),
            )
        finally:
            server.stop()


def copy_tree(
    tree: Tree,
    placement: str,
    server: Listener,
    command: list[str],
    into: Path,
    way: str,
    *after: str,
) -> Sample:
    """``command`` copies the tree: ``get`` into an empty directory, ``put`` from the tree
    into ``into/up`` (``after`` follows the source on the command line)."""
    with scratch(into, "up" if way == "put" else "copy") as target:
        source = [f"{target}/"] if way == "get" else [f"{tree.path}/", *after]
        full = [*command, *source]
        sample = timed_process(
            placed(full, placement, CLIENT_CPU),
            tree.nbytes,
            server.cpu_seconds,
            transfer_timeout(tree.nbytes) + tree.files / 10,
            shlex.join(full[:3]),
        )
        same_tree(tree, target, shlex.join(full))
    return sample


def tar_nc(tree: Tree, placement: str, into: Path) -> Sample:
    """``tar -c | nc -N`` to ``nc -l | tar -x``: timed from the sender's start to the end of
    the receiving tar."""
    port = free_port()
    with scratch(into, "copy") as target:
        receive = placed(
            ["sh", "-c", f"nc -l 127.0.0.1 {port} | tar -x -C {shlex.quote(str(target))}"],
            placement,
            CLIENT_CPU,
        )
        receiver = spawn(receive, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port, START_TIMEOUT, lambda: receiver.poll() is None)
            send = placed(
                [
                    "sh",
                    "-c",
                    f"tar -c -C {shlex.quote(str(tree.root))} tree | nc -N 127.0.0.1 {port}",
                ],
                placement,
                SERVER_CPU,
            )
            machine_before = cpu_counters()
            started = time.monotonic()
            sender = spawn(send, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            timeout = transfer_timeout(tree.nbytes)
            try:
                sent, server_seconds, _ = wait_exit(sender, timeout, "tar | nc")
                code, client_seconds, ended = wait_exit(receiver, timeout, "nc | tar")
            finally:
                end_process(sender)
            machine_after = cpu_counters()
        finally:
            end_process(receiver)
            if receiver.stderr is not None:
                receiver.stderr.close()
        if sent or code:
            raise BenchmarkError(f"tar | nc failed ({sent}, {code})")
        wall = ended - started
        w = window(machine_before, machine_after, wall, client_seconds + server_seconds)
        sample = Sample.of(wall, tree.nbytes, server_seconds, client_seconds, w)
        copied = target / "tree"
        copied.rename(target.with_name("copied"))
        same_tree(tree, target.with_name("copied"), "tar | nc")
    return sample


def run_alone(
    space: Workspace, args: argparse.Namespace, results: Results, budget: NoiseBudget, prefix: str
) -> None:
    """The one-core references, once."""

    def alone(key: str) -> Callable[[], Sample]:
        return lambda: measure_alone(space, key)

    for key in ("sha256sum", "hashlib", "blake3", "write", "startup"):
        if key not in args.only:
            continue
        label = f"{prefix} {ONE_CORE:>8} {ROW[key].label:<48}"
        results.setdefault((key, ONE_CORE), []).append(measure(alone(key), label, args, budget))


# Facts and figures ----------------------------------------------------------------------


def tool_version(command: list[str], pattern: str) -> str:
    try:
        text = subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, text)
    return match.group(1) if match else "?"


def files_facts(tmp: Path) -> dict[str, str]:
    sha_ni = " sha_ni" in cpu_model()[1]
    facts = machine_facts()
    return facts | {
        "cpu": facts["cpu"] + (" (SHA extensions: sha_ni)" if sha_ni else ""),
        "hashlib's SHA-256": ssl.OPENSSL_VERSION,
        "socat": tool_version(["socat", "-V"], r"socat version (\S+)"),
        "curl": tool_version(["curl", "--version"], r"curl (\S+)"),
        "sha256sum": tool_version(["sha256sum", "--version"], r"GNU coreutils\) (\S+)"),
        "rsync": tool_version(["rsync", "--version"], r"rsync\s+version (\S+)"),
        "blake3": blake3.__version__,
        "files": f"{tmp} ({filesystem_type(tmp)})",
    }


def median_of(samples: Sequence[Sample], pick: Callable[[Sample], float]) -> float:
    return float(statistics.median(pick(s) for s in samples))


def rate(results: Results, key: str, placement: str) -> float | None:
    placement = placement if ROW[key].paired else ONE_CORE
    samples = results.get((key, placement))
    return median_of(samples, lambda s: s.mib_s) if samples else None


def share(value: float) -> str:
    return f"{value:.0%}"


def per_gib(cpu_seconds: float | None, sample: Sample) -> float:
    return (cpu_seconds or 0.0) / (sample.nbytes / GIB)


def results_row(row: Row, samples: Sequence[Sample], noisy: float) -> list[object]:
    server = f"{median_of(samples, lambda s: per_gib(s.server_cpu, s)):.2f}" if row.paired else "-"
    return [
        row.label,
        f"{median_of(samples, lambda s: s.mib_s):,.0f}",
        spread((s.mib_s for s in samples), ",.0f"),
        server,
        f"{median_of(samples, lambda s: per_gib(s.client_cpu, s)):.2f}",
        share(median_of(samples, lambda s: s.cpu0_busy)),
        share(median_of(samples, lambda s: s.cpu1_busy)),
        f"{median_of(samples, lambda s: s.other_cpu):.2f}",
        f"{sum(1 for s in samples if s.other_cpu <= noisy)}/{len(samples)}",
    ]


def results_table(results: Results, placement: str, noisy: float) -> str:
    measured = [
        (row, results.get((row.key, placement if row.paired else ONE_CORE)))
        for row in ROWS
        if row.key not in TREE_KEYS
    ]
    return table(
        [
            "measurement",
            "MiB/s",
            "min to max",
            "server CPU s/GiB",
            "client CPU s/GiB",
            "CPU 0 busy",
            "CPU 1 busy",
            "other CPU",
            "quiet rounds",
        ],
        (results_row(row, samples, noisy) for row, samples in measured if samples),
    )


def seconds_of(results: Results, key: str, placement: str) -> float | None:
    samples = results.get((key, placement if ROW[key].paired else ONE_CORE))
    return median_of(samples, lambda s: s.seconds) if samples else None


def tree_table(results: Results, placement: str, tree: tuple[int, int], noisy: float) -> str:
    """The tree's copies: seconds (median, spread), files a second, CPU seconds of each side."""
    files = tree[0]
    rows = []
    for key in TREE_KEYS:
        samples = results.get((key, placement if ROW[key].paired else ONE_CORE))
        if not samples:
            continue
        median = median_of(samples, lambda s: s.seconds)
        server = (
            f"{median_of(samples, lambda s: s.server_cpu or 0.0):.2f}" if ROW[key].paired else "-"
        )
        rows.append(
            [
                ROW[key].label,
                f"{median:.3f}",
                spread((s.seconds for s in samples), ".3f"),
                f"{files / median:,.0f}" if key != "startup" else "-",
                server,
                f"{median_of(samples, lambda s: s.client_cpu):.2f}",
                f"{median_of(samples, lambda s: s.other_cpu):.2f}",
                f"{sum(1 for s in samples if s.other_cpu <= noisy)}/{len(samples)}",
            ]
        )
    return table(
        [
            "measurement",
            "seconds",
            "min to max",
            "files/s",
            "server CPU s",
            "client CPU s",
            "other CPU",
            "quiet rounds",
        ],
        rows,
    )


PAIRED = [row.key for row in ROWS if row.paired]


def choose_placement(results: Results, placements: Sequence[str]) -> tuple[str, str]:
    """The placement the ratios use, and why."""
    if len(placements) == 1:
        return placements[0], f"only {placements[0]} was measured"
    faster = [
        key
        for key in PAIRED
        if (rate(results, key, UNPINNED) or 0.0) > (rate(results, key, PINNED) or 0.0)
    ]
    if len(faster) == len(PAIRED):
        return UNPINNED, "unpinned was faster for every client/server pair"
    slower = [ROW[key].label for key in PAIRED if key not in faster]
    return PINNED, "unpinned was not faster for every pair (not for: " + "; ".join(slower) + ")"


def placement_table(results: Results) -> str:
    rates = [(key, rate(results, key, PINNED), rate(results, key, UNPINNED)) for key in PAIRED]
    return table(
        ["measurement", "pinned MiB/s", "unpinned MiB/s", "unpinned / pinned"],
        (
            [ROW[key].label, f"{fixed:,.0f}", f"{unfixed:,.0f}", f"{unfixed / fixed:.2f}x"]
            for key, fixed, unfixed in rates
            if fixed is not None and unfixed is not None
        ),
    )


@dataclass(frozen=True)
class Goal:
    text: str
    value: float | None
    goal: float | None  # None: for reference only


def best_of(results: Results, placement: str, keys: Sequence[str]) -> tuple[str, float | None]:
    """The fastest of ``keys`` (by median), and its rate."""
    rated = [(rate(results, key, placement), key) for key in keys]
    known = [(value, key) for value, key in rated if value is not None]
    if not known:
        return keys[0], None
    value, key = max(known)
    return key, value


def over(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ceiling(results: Results, placement: str) -> float | None:
    """The best a verified download can do against an unverified one when the client
    has one core and is the bottleneck: its CPU per GiB unverified over that plus what
    BLAKE3 alone costs per GiB."""
    receive = results.get(("down-off", placement))
    hashing = results.get(("blake3", ONE_CORE))
    if not receive or not hashing:
        return None
    plain = median_of(receive, lambda s: per_gib(s.client_cpu, s))
    return plain / (plain + median_of(hashing, lambda s: per_gib(s.client_cpu, s)))


def goals(results: Results, placement: str) -> list[Goal]:
    def r(key: str) -> float | None:
        return rate(results, key, placement)

    pipe_key, pipe = best_of(results, placement, ["socat", "socat-1m"])
    sha_key, sha = best_of(results, placement, ["hashlib", "sha256sum"])
    pipe_name, sha_name = ROW[pipe_key].label, ROW[sha_key].label
    return [
        Goal(
            f"download, verify off / raw pipe ({pipe_name})",
            over(r("down-off"), pipe),
            GOAL_DOWNLOAD_VS_PIPE,
        ),
        Goal(
            f"download, verify on, warm / SHA-256 alone on one core ({sha_name})",
            over(r("down-warm"), sha),
            GOAL_VERIFIED_VS_SHA256,
        ),
        Goal(
            f"download, verify on, cold / SHA-256 alone on one core ({sha_name})",
            over(r("down-cold"), sha),
            None,
        ),
        Goal(
            "download, verify on, warm / sha256sum FILE",
            over(r("down-warm"), r("sha256sum")),
            None,
        ),
        Goal(
            "upload, verify off / download, verify off",
            over(r("up-off"), r("down-off")),
            GOAL_UPLOAD_VS_DOWNLOAD,
        ),
        Goal(
            "upload, verify on / download, verify on, warm",
            over(r("up-on"), r("down-warm")),
            GOAL_UPLOAD_VS_DOWNLOAD,
        ),
        Goal(
            "upload, verify on / download, verify on, cold",
            over(r("up-on"), r("down-cold")),
            None,
        ),
        Goal(
            "download, BLAKE3, cold / download, verify off",
            over(r("down-cold"), r("down-off")),
            GOAL_VERIFIED_VS_UNVERIFIED,
        ),
        Goal(
            "download, BLAKE3, warm / download, verify off",
            over(r("down-warm"), r("down-off")),
            GOAL_VERIFIED_VS_UNVERIFIED,
        ),
        Goal(
            "ceiling with one client core: download, verify off's client CPU per GiB"
            " / (that + BLAKE3 alone's)",
            ceiling(results, placement),
            None,
        ),
        Goal(
            "upload, BLAKE3 / upload, verify off",
            over(r("up-on"), r("up-off")),
            GOAL_VERIFIED_VS_UNVERIFIED,
        ),
        Goal(
            "download, SHA-256, warm / download, verify off",
            over(r("down-sha"), r("down-off")),
            None,
        ),
        Goal("upload, SHA-256 / upload, verify off", over(r("up-sha"), r("up-off")), None),
        Goal(
            "tree: rsync's time / socketeer get -r's time",
            over(r("tree-get"), r("tree-rsync-get")),
            GOAL_TREE_VS_RSYNC,
        ),
        Goal(
            "tree: rsync's time / socketeer put -r's time",
            over(r("tree-put"), r("tree-rsync-put")),
            GOAL_TREE_VS_RSYNC,
        ),
        Goal(
            "tree: tar and nc's time / socketeer get -r's time",
            over(r("tree-get"), r("tree-tar")),
            None,
        ),
        Goal("download, verify off / http.server + curl", over(r("down-off"), r("http")), None),
        Goal(
            "download, verify off / writing a new file alone",
            over(r("down-off"), r("write")),
            None,
        ),
        Goal("raw pipe / writing a new file alone", over(pipe, r("write")), None),
    ]


def goal_row(item: Goal) -> list[object]:
    value = "n/a" if item.value is None else f"{item.value:.3f}x"
    if item.goal is None:
        return [item.text, value, "-", "for reference"]
    met = item.value is not None and item.value >= item.goal
    verdict = "not measured" if item.value is None else ("met" if met else "missed")
    return [item.text, value, f">= {item.goal}x", verdict]


def goal_table(items: Sequence[Goal]) -> str:
    return table(["ratio of medians", "value", "goal", ""], map(goal_row, items), align="lrrl")


def render(
    command: str,
    started: datetime.datetime,
    elapsed: float,
    facts: dict[str, str],
    loads: tuple[str, str],
    args: argparse.Namespace,
    results: Results,
    budget: NoiseBudget,
) -> str:
    placements: list[str] = args.placements
    chosen, why = choose_placement(results, placements)
    kept = [s.other_cpu for samples in results.values() for s in samples]
    parts = [
        *head("Files benchmark", "files.py", command, started, elapsed, loads, facts),
        "## Method",
        "",
        f"- One file of {args.mib} MiB of random bytes, created once in a fresh directory on "
        f"{args.tmp} (a tmpfs: the source is read from memory and every copy is written to "
        "memory, so no disk speed is measured; a new file is written by every transfer). "
        "Only 127.0.0.1 is used. Every copy is compared byte for byte with the source, then "
        "removed; the directory is removed at the end.",
        "- Raw pipe: `socat -u [-b 1048576] OPEN:FILE TCP-LISTEN:0,bind=127.0.0.1,reuseaddr` "
        "sending to `socat -u [-b 1048576] TCP:127.0.0.1:PORT OPEN:DEST,creat,trunc`, with "
        "socat's default 8 KiB blocks and with 1 MiB blocks; the better of the two is the "
        "pipe the goals use.",
        "- `python -m http.server --bind 127.0.0.1 --directory DIR 0`, fetched by "
        "`curl -s -S -f -o DEST URL`.",
        "- socketeer: `benchmarks/files_server.py` (the files service, uploads allowed with a "
        "token, on asyncio's own loop so that downloads use `os.sendfile`), and "
        "`benchmarks/files_client.py` timing one `FilesClient.download(...)` or `.upload(...)` "
        "call (`force=True`, no resume; connecting is not timed). Per round the server is "
        "started fresh; its first download, verified with BLAKE3 (the default), is the cold "
        "one (the server hashes the file while it sends it); the next verified download is "
        "warm (the server's hash cache answers). Then a warm download verified with SHA-256 "
        "(`--hash sha256`), a download with verification off, an upload with verification "
        "off, one verified with BLAKE3 and one verified with SHA-256.",
        f"- A tree of {args.tree_files:,} files of {args.tree_size:,} bytes (100 to a "
        "directory), copied whole into an empty directory (every file of the copy is compared "
        "with the source, then the copy is removed): `rsync -r rsync://127.0.0.1:PORT/mod/tree/"
        " DEST/` from an rsync daemon (`rsync --daemon --no-detach --config=FILE --port=PORT`) "
        "and `rsync -r tree/ rsync://127.0.0.1:PORT/mod/up/` to it; `tar -c tree` piped to `nc "
        "-N`, received by `nc -l` piped to `tar -x` (one way); `socketeer get -r -q EP tree/ "
        "DEST/` and `socketeer put -r -q tree/ EP up` against the files server above (verified "
        "with BLAKE3, each file fsynced and renamed into place). Each is timed from spawning "
        "the command until it exits, its own start included: the `socketeer --version` row is "
        "that start alone (a Python interpreter importing the command line, its bytecode compiled "
        "beforehand into a cache of its own, as for an installed package). The rsync daemon "
        "forks a process per connection, whose CPU time is not in its server CPU column.",
        "- One core alone (always on CPU 1): `sha256sum FILE`; `hashlib.sha256` over the file "
        "read in 1 MiB chunks; BLAKE3 (the `blake3` package the files service uses) over "
        "one 1 MiB piece of the file, in cache, as many times as the file has pieces (the "
        "hash's own cost, as a receiver hashes what it has just read); writing a new file of "
        "the same size on the tmpfs in 1 MiB writes. The ceiling row of the goals divides "
        "the unverified download's client CPU per GiB by that plus BLAKE3 alone's: what a "
        "verified download can reach at best while the client's one core is what limits both.",
        "- Times: socat, curl and sha256sum are timed from spawning the (receiving) process "
        "to its exit, so a few milliseconds of exec and connect are included; socketeer, "
        "hashlib and the file write are timed inside their process around the work alone.",
        "- Placement: pinned = every server on CPU 0 and every client on CPU 1 (`taskset`); "
        f"unpinned = both free to use both CPUs. Measured here: {', '.join(placements)}. "
        f"The ratios use **{chosen}**: {why}.",
        f"- {args.rounds} rounds; in each, every measurement once, placements back to back. "
        "Which placement goes first alternates from round to round, and the order of socat, "
        "socat -b, http.server and socketeer turns by one each round (socketeer's own "
        "transfers keep their order: cold download first). Figures are medians over the "
        "rounds; the spread is min to max.",
        "- CPU columns: server and client CPU are the CPU seconds (utime+stime, all threads) "
        "each process used per GiB moved, the cost of the work whatever else ran; softirq "
        "time, where much of loopback TCP is processed, is in neither. CPU 0 and CPU 1 busy "
        "are the share of the timed seconds each CPU was not idle (from /proc/stat, softirq "
        "included): a pinned side at 100% is the bottleneck. Other CPU is the user+system "
        "time of every other process on the machine over the timed seconds, in CPUs (1.00 = "
        "a whole core taken from the measurement); quiet rounds are those in which it stayed "
        f"at or below {args.noisy:.2f}.",
        f"- {noise_method(args, budget, kept)}",
        "",
        f"## Results, {chosen} (median of {args.rounds} rounds, 1 MiB = 2^20 bytes)",
        "",
        results_table(results, chosen, args.noisy),
        "",
    ]
    if any(key in TREE_KEYS for key, _ in results):
        parts += [
            f"## Trees of small files, {chosen} (median of {args.rounds} rounds)",
            "",
            tree_table(results, chosen, (args.tree_files, args.tree_size), args.noisy),
            "",
        ]
    others = [p for p in placements if p != chosen]
    for other in others:
        parts += [
            f"## Results, {other} (median of {args.rounds} rounds)",
            "",
            "The one-core references are the same rows as above.",
            "",
            results_table(results, other, args.noisy),
            "",
            "### Pinned against unpinned",
            "",
            placement_table(results),
            "",
        ]
    parts += [
        f"## Goals ({chosen})",
        "",
        "Ratios of the medians above. These are goals, not assertions; the figures are only "
        "what this run measured.",
        "",
        goal_table(goals(results, chosen)),
        "",
    ]
    for other in others:
        parts += [
            f"### The same ratios, {other} (for reference)",
            "",
            goal_table(goals(results, other)),
            "",
        ]
    return "\n".join(parts)


# Main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=1024, help="size of the file in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--placement", choices=[PINNED, UNPINNED, "both"], default="both", help="CPU placement"
    )
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"), help="a tmpfs directory")
    parser.add_argument("--tree-files", type=int, default=5000, help="files in the tree")
    parser.add_argument("--tree-size", type=int, default=4096, help="bytes in each of them")
    parser.add_argument(
        "--only",
        default=",".join(ROW),
        help=f"comma-separated subset of {','.join(ROW)}",
    )
    add_noise_options(parser, budget=600.0)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write every round's raw figures here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.mib < 1 or args.retries < 0:
        parser.error("--rounds and --mib must be positive, --retries not negative")
    args.placements = [PINNED, UNPINNED] if args.placement == "both" else [args.placement]
    args.only = {key.strip() for key in args.only.split(",") if key.strip()}
    unknown = sorted(args.only - set(ROW))
    if unknown or not args.only:
        parser.error(f"--only: unknown {unknown}; choose from {', '.join(ROW)}")
    return args


def preflight(args: argparse.Namespace) -> str | None:
    """What keeps this run from measuring what it claims, if anything."""
    tools = ("socat", "curl", "taskset", "sha256sum", "rsync", "nc", "ss", "tar")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        return (
            f"missing {', '.join(missing)} (apt-get install -y socat curl util-linux coreutils "
            "rsync netcat-openbsd iproute2 tar)"
        )
    if problem := usable_cpus_problem():
        return problem
    if filesystem_type(args.tmp) != "tmpfs":
        return f"{args.tmp} is not a tmpfs ({filesystem_type(args.tmp)}); pass --tmp"
    free = shutil.disk_usage(args.tmp).free
    if free < 4 * args.mib * MIB:
        return f"{args.tmp} has {free // MIB} MiB free; {4 * args.mib} MiB are needed"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/files.py", *given])
    problem = preflight(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    t0 = time.monotonic()
    results: Results = {}
    budget = NoiseBudget.from_args(args)
    try:
        wanted = args.only & set(TREE_KEYS) - {"startup"}
        tree = (args.tree_files, args.tree_size) if wanted else None
        compile_bytecode()
        with workspace(args.tmp, args.mib * MIB, tree) as space:
            for round_no in range(1, args.rounds + 1):
                # Placements alternate which goes first, as the groups within them turn.
                turn = (round_no - 1) % len(args.placements)
                for placement in args.placements[turn:] + args.placements[:turn]:
                    run_round(space, placement, args, results, budget, round_no)
                run_alone(space, args, results, budget, f"round {round_no}/{args.rounds}")
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t0
    report = render(
        command,
        started,
        elapsed,
        files_facts(args.tmp),
        (load_before, load_average()),
        args,
        results,
        budget,
    )
    print(report)
    if args.out:
        write_report(args.out, report)
    if args.json:
        raw = [
            {"measurement": key, "placement": placement, "round": i + 1, **asdict(sample)}
            for (key, placement), samples in results.items()
            for i, sample in enumerate(samples)
        ]
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
