"""TLS benchmark: a download over TLS against socat's TLS pipe, and TLS echo CPU per request.

    python benchmarks/tls.py [--mib 1024] [--rounds 3] [--tmp /dev/shm]
                             [--seconds 3] [--conns 10] [--out docs/tls-benchmarks.md]

Needs ``socat``, ``openssl`` and ``taskset``, two usable CPUs, and three
times ``--mib`` free on the tmpfs.  Every process runs with an OpenSSL
configuration (``OPENSSL_CONF``) that allows one TLS 1.3 cipher suite,
TLS_AES_128_GCM_SHA256, so that every contender encrypts with AES-128-GCM;
the runner checks what each server negotiates with ``openssl s_client``.
One ECDSA P-256 certificate, made by ``openssl req``, serves them all.

Measured in each round, servers pinned to CPU 0 and clients to CPU 1 (as
``benchmarks/files.py`` pins them), all on 127.0.0.1:

- ``socat`` relaying the file over TLS (``OPENSSL-LISTEN:`` to ``OPENSSL:``),
  with socat's default 8 KiB blocks and with ``-b 1048576``;
- ``socketeer serve files DIR tls://...`` and ``socketeer get tls://...``
  (the command line, timed from its start to its exit: Python's start-up is
  included), with ``--no-verify`` and with the SHA-256 check (the server
  hashes the file while it sends it, on a fresh server);
- ``openssl speed -evp aes-128-gcm`` in 16 KiB blocks on CPU 1: the cipher's
  own speed on one core, the limit of any TLS pipe here;
- TLS echo: ``socketeer serve echo tls://... --framing length`` and a
  hand-written asyncio Protocol echo (``benchmarks/echo_servers.py
  asyncio-protocol-tls``) with the same ``SSLContext``, both on asyncio's
  loop, loaded by ``benchmarks/loadgen.py --tls`` (1 KiB frames, closed
  loop): the server's CPU time per request.

Figures are medians over the rounds; every copy is compared byte for byte
with the source.  The noise policy is echo.py's and files.py's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import echo
import files
from machine import (
    CLIENT_CPU,
    SERVER_CPU,
    BenchmarkError,
    NoiseBudget,
    add_noise_options,
    load_average,
    machine_facts,
    noise_method,
    pinned,
    usable_cpus_problem,
)
from report import head, spread, table, write_report
from socketeer.tls import certificate_fingerprint

HERE = Path(__file__).resolve().parent
PY = sys.executable
MIB = files.MIB
CIPHER = "TLS_AES_128_GCM_SHA256"
OPENSSL_CONF = f"""openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = tls_sect
[tls_sect]
Ciphersuites = {CIPHER}
"""
GOAL_DOWNLOAD_VS_SOCAT = 0.8
GOAL_ECHO_CPU_VS_PROTOCOL = 1.2

DOWNLOADS = {
    "socat": "socat TLS pipe, default 8 KiB blocks",
    "socat-1m": "socat TLS pipe, -b 1048576",
    "get-off": "socketeer get --no-verify",
    "get-on": "socketeer get, SHA-256 checked (cold server)",
}
ECHOES = {
    "socketeer": "socketeer echo over TLS",
    "protocol": "hand-written asyncio Protocol over TLS",
}


class Setup:
    """The certificate, the OpenSSL configuration, and the commands that use them."""

    def __init__(self, directory: Path) -> None:
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        conf = directory / "openssl.cnf"
        conf.write_text(OPENSSL_CONF)
        os.environ["OPENSSL_CONF"] = str(conf)  # every process started from here on
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-subj", "/CN=localhost", "-days", "2",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        self.fingerprint = certificate_fingerprint(self.cert)
        self.tls_options = ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]

    def socat_addresses(self) -> tuple[str, str]:
        return (
            f"OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,cert={self.cert},key={self.key},verify=0",
            "OPENSSL:127.0.0.1:{port},verify=0",
        )


def negotiated(port: int) -> str:
    """The cipher suite ``openssl s_client`` (no preference of its own) gets on ``port``."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    match = re.search(r"Cipher is (\S+)", done.stdout.decode(errors="replace"))
    return match.group(1) if match else "none"


def check_cipher(port: int, what: str) -> None:
    cipher = negotiated(port)
    if cipher != CIPHER:
        raise BenchmarkError(f"{what} negotiated {cipher}, not {CIPHER}")


def socketeer_get(space: files.Workspace, setup: Setup, verify: bool) -> files.Sample:
    """A fresh ``serve files ... tls://`` and one ``get`` of the whole file."""
    command = [PY, "-m", "socketeer", "serve", "files", str(space.served), "tls://127.0.0.1:0"]
    server_command = pinned([*command, *setup.tls_options, "-q"], SERVER_CPU)
    ready = r"listening on tls://127\.0\.0\.1:(\d+)"
    with files.listening(server_command, ready, "socketeer serve files") as server:
        check_cipher(server.port, "socketeer serve files")
        dest = space.received / "get.bin"
        client = [PY, "-m", "socketeer", "get", f"tls://127.0.0.1:{server.port}"]
        client += [files.SOURCE_NAME, str(dest), "-q", "--tls-fingerprint", setup.fingerprint]
        client += [] if verify else ["--no-verify"]
        sample = files.timed_process(
            pinned(client, CLIENT_CPU),
            space.size,
            server.cpu_seconds,
            files.transfer_timeout(space.size),
            "socketeer get",
        )
    files.check_copy(space, dest, "socketeer get")
    return sample


def socat_pipe(space: files.Workspace, setup: Setup, block: int | None) -> files.Sample:
    return files.measure_socat(
        space, files.PINNED, block, setup.socat_addresses(), what="socat over TLS"
    )


def cipher_speed(seconds: int) -> float:
    """AES-128-GCM on CPU 1 in 16 KiB blocks, MiB/s (``openssl speed``)."""
    done = subprocess.run(
        pinned(["openssl", "speed", "-evp", "aes-128-gcm", "-bytes", "16384",
                "-seconds", str(seconds)], CLIENT_CPU),
        capture_output=True, timeout=60 + seconds, check=False,
    )  # fmt: skip
    match = re.search(r"AES-128-GCM\s+([\d.]+)k", done.stdout.decode(errors="replace"))
    if match is None:
        raise BenchmarkError(f"openssl speed said: {done.stdout.decode()[-300:]}")
    return float(match.group(1)) * 1000 / MIB


def python_start() -> float:
    """Seconds ``python -m socketeer --version`` takes on CPU 1: what every ``get`` pays first."""
    started = time.monotonic()
    subprocess.run(
        pinned([PY, "-m", "socketeer", "--version"], CLIENT_CPU),
        capture_output=True,
        timeout=60,
        check=True,
    )
    return time.monotonic() - started


def echo_servers(setup: Setup) -> list[echo.ServerSpec]:
    socketeer = [PY, "-m", "socketeer", "serve", "echo", "tls://127.0.0.1:0"]
    socketeer += ["--framing", "length", "--quiet", *setup.tls_options]
    protocol = [PY, echo.ANCHORS, "asyncio-protocol-tls", *setup.tls_options]
    return [
        echo.ServerSpec("socketeer", ECHOES["socketeer"], tuple(socketeer)),
        echo.ServerSpec("protocol", ECHOES["protocol"], tuple(protocol)),
    ]


# The run ------------------------------------------------------------------------------------


Downloads = dict[str, list[files.Sample]]
Echoes = dict[str, list[dict[str, Any]]]


def run(
    args: argparse.Namespace, setup: Setup, budget: NoiseBudget
) -> tuple[Downloads, Echoes, list[float], list[float]]:
    downloads: Downloads = {key: [] for key in DOWNLOADS}
    echoes: Echoes = {key: [] for key in ECHOES}
    speeds: list[float] = []
    starts: list[float] = []
    servers = echo_servers(setup)
    with files.workspace(args.tmp, args.mib * MIB) as space:
        for round_no in range(1, args.rounds + 1):
            prefix = f"round {round_no}/{args.rounds}"
            actions: dict[str, Callable[[], files.Sample]] = {
                "socat": lambda: socat_pipe(space, setup, None),
                "socat-1m": lambda: socat_pipe(space, setup, MIB),
                "get-off": lambda: socketeer_get(space, setup, verify=False),
                "get-on": lambda: socketeer_get(space, setup, verify=True),
            }
            keys = list(actions)
            turn = (round_no - 1) % len(keys)  # nobody always goes first
            for key in keys[turn:] + keys[:turn]:
                label = f"{prefix} {DOWNLOADS[key]:<46}"
                downloads[key].append(files.measure(actions[key], label, args, budget))
            for spec in servers if round_no % 2 else servers[::-1]:
                with echo.running(spec) as server:
                    if round_no == 1:
                        check_cipher(server.port, spec.label)
                    label = f"{prefix} {spec.label:>40} {args.conns:>4} conns"
                    echoes[spec.key].append(echo.measure(server, args.conns, args, label, budget))
            speeds.append(cipher_speed(args.speed_seconds))
            starts.append(python_start())
            print(f"{prefix} openssl speed aes-128-gcm: {speeds[-1]:.0f} MiB/s", file=sys.stderr)
    return downloads, echoes, speeds, starts


# The report ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rate(samples: Sequence[files.Sample]) -> float:
    return median([s.mib_s for s in samples])


def verdict(value: float, goal: float, at_most: bool) -> str:
    met = value <= goal if at_most else value >= goal
    return "met" if met else "missed"


def render(
    command: str,
    started: datetime.datetime,
    elapsed: float,
    loads: tuple[str, str],
    args: argparse.Namespace,
    budget: NoiseBudget,
    results: tuple[Downloads, Echoes, list[float], list[float]],
) -> str:
    downloads, echoes, speeds, starts = results
    speed = median(speeds)
    facts = machine_facts() | {
        "OpenSSL": files.tool_version(["openssl", "version"], r"OpenSSL (\S+)"),
        "socat": files.tool_version(["socat", "-V"], r"socat version (\S+)"),
        "files": f"{args.tmp} ({files.filesystem_type(args.tmp)})",
    }
    rows = [
        [
            label,
            f"{rate(downloads[key]):.0f}",
            spread((s.mib_s for s in downloads[key]), ".0f"),
            f"{median([s.seconds for s in downloads[key]]):.2f}",
            f"{median([(s.server_cpu or 0.0) / s.seconds for s in downloads[key]]):.0%}",
            f"{median([s.client_cpu / s.seconds for s in downloads[key]]):.0%}",
            f"{rate(downloads[key]) / speed:.0%}",
        ]
        for key, label in DOWNLOADS.items()
    ]
    rows.append(["openssl speed -evp aes-128-gcm, 16 KiB, one core", f"{speed:.0f}",
                 spread(speeds, ".0f"), "-", "-", "-", "100%"])  # fmt: skip
    socat_key = max(("socat", "socat-1m"), key=lambda key: rate(downloads[key]))
    vs_socat = rate(downloads["get-off"]) / rate(downloads[socat_key])
    cpu = {key: median([r["server_cpu_us_per_req"] for r in echoes[key]]) for key in ECHOES}
    vs_protocol = cpu["socketeer"] / cpu["protocol"]
    echo_rows = [
        [
            ECHOES[key],
            args.conns,
            f"{median([r['rps'] for r in echoes[key]]):,.0f}",
            f"{median([r['p50_us'] for r in echoes[key]]):.0f}",
            f"{cpu[key]:.1f}",
            spread((r["server_cpu_us_per_req"] for r in echoes[key]), ".1f"),
        ]
        for key in ECHOES
    ]
    kept_other = [s.other_cpu for samples in downloads.values() for s in samples]
    kept_other += [r["other_cpu_util"] for rounds in echoes.values() for r in rounds]
    header = ["transfer", "MiB/s", "MiB/s, min to max", "seconds", "server CPU busy"]
    header += ["client CPU busy", "of the cipher's speed"]
    lines = [
        *head("TLS benchmarks", "tls.py", command, started, elapsed, loads, facts),
        "## Method",
        "",
        f"- {args.mib} MiB of random bytes on a tmpfs; {args.rounds} rounds, medians (and the "
        "spread, min to max). Servers pinned to CPU 0, clients to CPU 1 (`taskset`), all on "
        "127.0.0.1. Every copy is compared byte for byte with the source.",
        f"- One cipher for everyone: an `OPENSSL_CONF` allowing TLS 1.3's {CIPHER} only "
        "(checked with `openssl s_client` against each server); one ECDSA P-256 certificate.",
        "- socketeer's figures are the command line's, from its start to its exit: Python's "
        f"start-up (`python -m socketeer --version`: {median(starts):.2f} s here) is in them.",
        "- Echo: 1 KiB length-framed messages, closed loop, `benchmarks/loadgen.py --tls` on "
        f"uvloop; {args.warmup:g} s warm-up, {args.seconds:g} s measured. Server CPU is "
        "utime+stime of the server process over the measured window per request. Both servers "
        "run asyncio's loop and the same `SSLContext` (socketeer's, with ALPN).",
        f"- {noise_method(args, budget, kept_other)} Figures on a shared machine are noisy: "
        "compare rows of one run, not runs.",
        "",
        "## 1 GiB download over TLS" if args.mib == 1024 else f"## {args.mib} MiB over TLS",
        "",
        table(header, rows),
        "",
        "## TLS echo",
        "",
        table(
            ["server", "conns", "req/s", "p50 us", "server CPU us/req", "CPU us/req, min to max"],
            echo_rows,
        ),
        "",
        "## Goals",
        "",
        f"- socketeer get --no-verify >= {GOAL_DOWNLOAD_VS_SOCAT}x the faster socat TLS pipe "
        f"({DOWNLOADS[socat_key]}): {vs_socat:.2f}x, "
        f"{verdict(vs_socat, GOAL_DOWNLOAD_VS_SOCAT, at_most=False)}.",
        f"- socketeer echo server CPU per request <= {GOAL_ECHO_CPU_VS_PROTOCOL}x the "
        f"hand-written Protocol's over the same SSLContext: {vs_protocol:.2f}x, "
        f"{verdict(vs_protocol, GOAL_ECHO_CPU_VS_PROTOCOL, at_most=True)}.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=1024, help="size of the file downloaded")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"), help="a tmpfs directory")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured echo window")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--conns", type=int, default=10, help="echo connections")
    parser.add_argument("--size", type=int, default=1024, help="echo message bytes")
    parser.add_argument("--speed-seconds", type=int, default=3, help="openssl speed's time")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    add_noise_options(parser, budget=120.0)
    args = parser.parse_args(argv)
    args.tls = True  # echo.run_load's loadgen connects over TLS
    if args.mib < 1 or args.rounds < 1 or args.conns < 1:
        parser.error("--mib, --rounds and --conns must be positive")
    return args


def preflight(args: argparse.Namespace) -> str | None:
    for tool in ("socat", "openssl", "taskset"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
            return f"{tool} is required"
    if files.filesystem_type(args.tmp) != "tmpfs":
        return f"{args.tmp} is not a tmpfs: the disk would be measured"
    return usable_cpus_problem()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/tls.py", *given])
    problem = preflight(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {CLIENT_CPU})
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    t0 = time.monotonic()
    budget = NoiseBudget.from_args(args)
    with tempfile.TemporaryDirectory(prefix="socketeer-tls-bench-") as directory:
        os.environ["XDG_STATE_HOME"] = directory  # no known_hosts of the user's touched
        try:
            results = run(args, Setup(Path(directory)), budget)
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    report = render(
        command,
        started,
        time.monotonic() - t0,
        (load_before, load_average()),
        args,
        budget,
        results,
    )
    print(report)
    if args.out:
        write_report(args.out, report)
    if args.json:
        downloads, echoes, speeds, starts = results
        raw = {
            "downloads": {key: [asdict(s) for s in samples] for key, samples in downloads.items()},
            "echo": echoes,
            "openssl_speed_mib_s": speeds,
            "python_start_s": starts,
        }
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
