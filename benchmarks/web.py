"""Files over HTTP benchmark: socketeer's downloads against nginx and http.server, its uploads.

    python benchmarks/web.py [--mib 1024] [--rounds 5] [--tmp /dev/shm]
                             [--out docs/web-benchmarks.md] [--json raw.json]

(Named ``web.py``, not ``http.py``: a script's own directory comes first on
``sys.path``, and a ``benchmarks/http.py`` would hide the standard
library's ``http`` from every helper run from here.)

Needs ``nginx`` (Debian ``nginx-light``), ``curl`` and ``taskset``, two
usable CPUs, and three times ``--mib`` free on the tmpfs.

One file of ``--mib`` MiB of random bytes is created once in a fresh
directory under ``--tmp`` (a tmpfs: no disk is measured), and three
servers share that directory on 127.0.0.1, each pinned to CPU 0:

- ``socketeer serve files DIR 127.0.0.1:0 --allow-upload`` (asyncio's own
  loop: downloads go out with ``os.sendfile``);
- nginx, from a minimal ``nginx.conf`` the runner writes into a temporary
  directory (``sendfile on``, ``daemon off``, ``master_process off``: one
  process, which is the PID the runner measures and stops; its pid file,
  error and access logs and body temp directory in the same temporary
  directory; a free loopback port);
- ``python -m http.server``.

Measured in each round, every client pinned to CPU 1:

- a download of the file by ``curl -s -S -f -o /dev/null URL`` from each
  server (``/dev/null``: what is measured is the server and the wire, not
  the client's writes; ``-f`` and curl's own check of ``Content-Length``
  make a short or failed transfer an error);
- an upload of the file by ``curl -T FILE`` with the token (``PUT``) to
  socketeer, and with the files protocol: ``socketeer put --no-verify
  --force`` (timed from spawn to exit, so Python's start-up is in it), and
  ``benchmarks/files_client.py upload`` (the same ``FilesClient.upload`` call
  timed inside its process, no start-up): the goal compares against the
  faster of the two.

Before the rounds, one untimed download from each server is written to the
tmpfs and compared byte for byte with the source; every upload is compared
byte for byte and removed.  The order of the measurements turns by one each
round.  Servers are started once, ended by their PID (SIGTERM, then SIGKILL
after a timeout); every wait has a timeout; the directory is removed at the
end.  The machine may be shared: the runner waits (bounded) for quiet
before each measurement and repeats a disturbed one (bounded), keeping the
quietest.  Figures are medians over the rounds; the goals are goals, not
assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from files import (
    MIB,
    PY,
    START_TIMEOUT,
    UPLOAD_NAME,
    Listener,
    Results,
    Row,
    Sample,
    Workspace,
    check_copy,
    end_process,
    files_facts,
    filesystem_type,
    http_server,
    listening,
    measure,
    median_of,
    remove_upload,
    results_row,
    run_helper,
    spawn,
    timed_process,
    tool_version,
    transfer_timeout,
    workspace,
)
from machine import (
    CLIENT_CPU,
    SERVER_CPU,
    BenchmarkError,
    NoiseBudget,
    add_noise_options,
    load_average,
    noise_method,
    pinned,
    process_cpu_seconds,
    usable_cpus_problem,
)
from report import head, table, write_report

SOURCE_NAME = "source.bin"
NGINX = "/usr/sbin/nginx"
PINNED = "pinned"
# Goals, stated next to the figures.
GOAL_VS_NGINX = 0.9
GOAL_UPLOAD_VS_PROTOCOL = 0.8

ROWS = (
    Row("get-socketeer", "download: socketeer serve files + curl", True),
    Row("get-nginx", "download: nginx (sendfile on) + curl", True),
    Row("get-http.server", "download: python -m http.server + curl", True),
    Row("put-curl", "upload: curl -T to socketeer (HTTP PUT)", True),
    Row("put-cli", "upload: socketeer put --no-verify (files protocol)", True),
    Row("put-client", "upload: FilesClient.upload, verify off (files protocol)", True),
)
ROW = {row.key: row for row in ROWS}


# nginx ----------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/octet-stream bin; }}
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


class Nginx:
    """nginx serving ``root`` on a free loopback port, one process, stopped by its PID."""

    what = "nginx"

    def __init__(self, root: Path, tmp: Path) -> None:
        self.port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=self.port, root=root))
        command = [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        self._log = tmp / "error.log"
        self.proc = spawn(
            pinned(command, SERVER_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid = self.proc.pid
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise BenchmarkError(f"nginx exited ({self.proc.returncode}): {self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1.0),
            ):
                return
            if time.monotonic() > deadline:
                raise BenchmarkError(f"nginx did not listen in time: {self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-1000:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        if self.proc.poll() is not None:
            raise BenchmarkError(f"nginx died: {self.log_text()}")
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        end_process(self.proc)


@contextlib.contextmanager
def nginx(root: Path) -> Iterator[Nginx]:
    tmp = Path(tempfile.mkdtemp(prefix="socketeer-web-bench-nginx-"))
    try:
        server = Nginx(root, tmp)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def socketeer_server(space: Workspace, token: str) -> contextlib.AbstractContextManager[Listener]:
    command = pinned(
        [PY, "-m", "socketeer", "serve", "files", str(space.served), "127.0.0.1:0",
         "--allow-upload", "--token", token],
        SERVER_CPU,
    )  # fmt: skip
    return listening(command, r"listening on 127\.0\.0\.1:(\d+)", "socketeer serve files")


# Measurements ---------------------------------------------------------------------------


Server = Listener | Nginx


def url(server: Server, name: str) -> str:
    return f"http://127.0.0.1:{server.port}/{name}"


def curl_download(space: Workspace, server: Server, dest: str) -> Sample:
    command = pinned(["curl", "-s", "-S", "-f", "-o", dest, url(server, SOURCE_NAME)], CLIENT_CPU)
    return timed_process(
        command, space.size, server.cpu_seconds, transfer_timeout(space.size), "curl"
    )


def verified_download(space: Workspace, server: Server) -> None:
    """One untimed download to the tmpfs, compared byte for byte with the source."""
    dest = space.received / "curl.bin"
    curl_download(space, server, str(dest))
    check_copy(space, dest, f"curl from {server.what}")


def curl_upload(space: Workspace, server: Listener, token: str) -> Sample:
    remove_upload(space)
    command = pinned(
        ["curl", "-s", "-S", "-f", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
         "-T", str(space.source), url(server, UPLOAD_NAME)],
        CLIENT_CPU,
    )  # fmt: skip
    sample = timed_process(
        command, space.size, server.cpu_seconds, transfer_timeout(space.size), "curl -T"
    )
    check_copy(space, space.served / UPLOAD_NAME, "curl -T")
    return sample


def cli_upload(space: Workspace, server: Listener, token: str) -> Sample:
    remove_upload(space)
    command = pinned(
        [PY, "-m", "socketeer", "put", "--no-verify", "--force", "-q", "--token", token,
         str(space.source), f"127.0.0.1:{server.port}", UPLOAD_NAME],
        CLIENT_CPU,
    )  # fmt: skip
    sample = timed_process(
        command, space.size, server.cpu_seconds, transfer_timeout(space.size), "socketeer put"
    )
    check_copy(space, space.served / UPLOAD_NAME, "socketeer put")
    return sample


def client_upload(space: Workspace, server: Listener, token: str) -> Sample:
    remove_upload(space)
    arguments = ["upload", str(server.port), str(space.source), UPLOAD_NAME, "--token", token]
    sample = run_helper(arguments, PINNED, server, transfer_timeout(space.size))
    check_copy(space, space.served / UPLOAD_NAME, "FilesClient.upload")
    return sample


def run_round(
    actions: dict[str, Callable[[], Sample]],
    args: argparse.Namespace,
    results: Results,
    budget: NoiseBudget,
    round_no: int,
) -> None:
    """Every measurement once, the order turned by one each round."""
    keys = [row.key for row in ROWS]
    turn = (round_no - 1) % len(keys)
    for key in keys[turn:] + keys[:turn]:
        label = f"round {round_no}/{args.rounds} {ROW[key].label:<56}"
        results.setdefault((key, PINNED), []).append(measure(actions[key], label, args, budget))


# Report ---------------------------------------------------------------------------------


def rate(results: Results, key: str) -> float | None:
    samples = results.get((key, PINNED))
    return median_of(samples, lambda s: s.mib_s) if samples else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goal_rows(results: Results) -> list[list[object]]:
    cli, client = rate(results, "put-cli"), rate(results, "put-client")
    protocol = max((r for r in (cli, client) if r is not None), default=None)
    items = [
        ("download: socketeer / nginx", ratio(rate(results, "get-socketeer"),
         rate(results, "get-nginx")), GOAL_VS_NGINX),
        ("download: socketeer / python -m http.server", ratio(rate(results, "get-socketeer"),
         rate(results, "get-http.server")), None),
        ("upload: curl -T / the files protocol's (the faster of its two rows)",
         ratio(rate(results, "put-curl"), protocol), GOAL_UPLOAD_VS_PROTOCOL),
        ("upload: curl -T / socketeer put", ratio(rate(results, "put-curl"), cli), None),
    ]  # fmt: skip
    rows: list[list[object]] = []
    for text, value, goal in items:
        shown = "n/a" if value is None else f"{value:.2f}x"
        if goal is None:
            rows.append([text, shown, "-", "for reference"])
        else:
            verdict = "not measured" if value is None else ("met" if value >= goal else "missed")
            rows.append([text, shown, f">= {goal}x", verdict])
    return rows


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
    kept = [s.other_cpu for samples in results.values() for s in samples]
    header = ["measurement", "MiB/s", "min to max", "server CPU s/GiB", "client CPU s/GiB"]
    header += ["CPU 0 busy", "CPU 1 busy", "other CPU", "quiet rounds"]
    rows = [results_row(row, results[(row.key, PINNED)], args.noisy) for row in ROWS]
    parts = [
        *head("Files over HTTP benchmark", "web.py", command, started, elapsed, loads, facts),
        "## Method",
        "",
        f"- One file of {args.mib} MiB of random bytes in a fresh directory on {args.tmp} "
        "(a tmpfs: no disk is measured), shared by three servers on 127.0.0.1, each pinned to "
        "CPU 0 (`taskset`); every client pinned to CPU 1.",
        "- Servers: `socketeer serve files DIR 127.0.0.1:0 --allow-upload` (asyncio's loop, "
        "downloads with `os.sendfile`); nginx from a minimal `nginx.conf` (`sendfile on`, "
        "`daemon off`, `master_process off`, one worker process, its logs and pid file in a "
        "temporary directory, access log on); `python -m http.server`.",
        "- Downloads: `curl -s -S -f -o /dev/null URL` (the client discards the bytes, so "
        "the server is measured rather than the client's writes; curl fails on a short "
        "body). Before the rounds one download from each server was written to the tmpfs "
        "and compared byte for byte with the source.",
        "- Uploads to socketeer (each compared byte for byte with the source, then removed): "
        "`curl -T FILE -H 'Authorization: Bearer TOKEN' URL` (HTTP PUT); `socketeer put "
        "--no-verify --force FILE 127.0.0.1:PORT NAME` (the files protocol, timed from "
        "spawn to exit: Python's start-up is included); `benchmarks/files_client.py upload` "
        "(the same `FilesClient.upload` call timed inside its process). The upload goal "
        "compares with the faster of the two files protocol rows.",
        "- curl and `socketeer put` are timed from spawning to exit. Server CPU is the "
        "server process's CPU seconds (utime+stime) per GiB; softirq time, where much of "
        "loopback TCP is processed, is in no process's figure. CPU 0/1 busy: share of the "
        "timed seconds each CPU was not idle. Other CPU: other processes' user+system time, "
        "in CPUs.",
        f"- {args.rounds} rounds, each measurement once per round, the order turned by one "
        "each round; medians over the rounds, the spread is min to max.",
        f"- {noise_method(args, budget, kept)} The machine is shared with other work: "
        "the figures are noisy, and only ratios measured in the same run mean much.",
        "",
        f"## Results (median of {args.rounds} rounds, 1 MiB = 2^20 bytes)",
        "",
        table(header, rows),
        "",
        "## Goals",
        "",
        "Ratios of the medians above. These are goals, not assertions.",
        "",
        table(["ratio of medians", "value", "goal", ""], goal_rows(results), align="lrrl"),
        "",
    ]
    return "\n".join(parts)


# Main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=1024, help="size of the file in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=Path("/dev/shm"), help="a tmpfs directory")
    add_noise_options(parser, budget=300.0)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write every round's raw figures here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.mib < 1 or args.retries < 0:
        parser.error("--rounds and --mib must be positive, --retries not negative")
    return args


def preflight(args: argparse.Namespace) -> str | None:
    """What keeps this run from measuring what it claims, if anything."""
    missing = [tool for tool in ("curl", "taskset") if not shutil.which(tool)]
    if not os.access(NGINX, os.X_OK):
        missing.append(NGINX)
    if missing:
        return f"missing {', '.join(missing)} (apt-get install -y nginx-light curl util-linux)"
    if problem := usable_cpus_problem():
        return problem
    if filesystem_type(args.tmp) != "tmpfs":
        return f"{args.tmp} is not a tmpfs ({filesystem_type(args.tmp)}); pass --tmp"
    free = shutil.disk_usage(args.tmp).free
    if free < 3 * args.mib * MIB:
        return f"{args.tmp} has {free // MIB} MiB free; {3 * args.mib} MiB are needed"
    return None


def web_facts(tmp: Path) -> dict[str, str]:
    facts = files_facts(tmp)
    del facts["socat"], facts["sha256sum"], facts["hashlib's SHA-256"]
    # nginx -v answers on stderr.
    version = tool_version(["sh", "-c", f"{NGINX} -v 2>&1"], r"nginx/(\S+)")
    return facts | {"nginx": version}


def measure_all(args: argparse.Namespace, budget: NoiseBudget) -> Results:
    results: Results = {}
    token = os.urandom(16).hex()
    with (
        workspace(args.tmp, args.mib * MIB) as space,
        socketeer_server(space, token) as ours,
        nginx(space.served) as theirs,
        http_server(space, PINNED) as stdlib,
    ):
        for server in (ours, theirs, stdlib):
            verified_download(space, server)
        actions: dict[str, Callable[[], Sample]] = {
            "get-socketeer": lambda: curl_download(space, ours, os.devnull),
            "get-nginx": lambda: curl_download(space, theirs, os.devnull),
            "get-http.server": lambda: curl_download(space, stdlib, os.devnull),
            "put-curl": lambda: curl_upload(space, ours, token),
            "put-cli": lambda: cli_upload(space, ours, token),
            "put-client": lambda: client_upload(space, ours, token),
        }
        for round_no in range(1, args.rounds + 1):
            run_round(actions, args, results, budget, round_no)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/web.py", *given])
    problem = preflight(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    t0 = time.monotonic()
    budget = NoiseBudget.from_args(args)
    try:
        results = measure_all(args, budget)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = render(
        command,
        started,
        time.monotonic() - t0,
        web_facts(args.tmp),
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
            {"measurement": key, "round": i + 1, **asdict(sample)}
            for (key, _), samples in results.items()
            for i, sample in enumerate(samples)
        ]
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
