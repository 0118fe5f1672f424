"""One timed measurement for ``benchmarks/files.py``, run in its own (pinned) process.

    python benchmarks/files_client.py download PORT REMOTE LOCAL [--verify] [--hash H]
    python benchmarks/files_client.py upload PORT LOCAL REMOTE --token TOKEN [--verify] [--hash H]
    python benchmarks/files_client.py sha256 FILE
    python benchmarks/files_client.py blake3 FILE
    python benchmarks/files_client.py write FILE --size BYTES

``download`` and ``upload`` connect to socketeer's files server on
127.0.0.1:PORT with :class:`~socketeer.services.files.client.FilesClient`
and time one ``download()`` / ``upload()`` call (``force=True``, no resume;
connecting and the hello are not timed).  ``sha256`` times
``hashlib.sha256`` over FILE read in 1 MiB chunks: what SHA-256 alone
manages on one core; ``blake3`` times the files service's BLAKE3 over one
1 MiB piece of FILE, in cache, as many times as FILE has pieces: the hash's
own cost.
``write`` times writing a new FILE of ``--size`` bytes (1 MiB writes): what
the destination filesystem alone accepts.

Prints one JSON object: the timed ``seconds``, the ``bytes`` moved, the CPU
time this process (all its threads) used in the timed part, and the
machine's /proc/stat CPU counters just before and after it.  A SIGALRM
ends the process after ``--hard-limit`` seconds, so it always stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import cpu_counters, own_cpu_seconds
from socketeer.services.files.client import FilesClient
from socketeer.services.files.hashes import DEFAULT, HASHES, new_hasher

CHUNK = 1024 * 1024


def timed(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``action``: its result, with the wall seconds and CPU seconds it took.

    The machine's CPU counters from just before and after go along, so the
    runner can tell how busy every CPU was and who else used them.
    """
    machine_before = cpu_counters()
    before = own_cpu_seconds()
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    after = own_cpu_seconds()
    machine_after = cpu_counters()
    return result | {
        "seconds": seconds,
        "cpu_seconds": after - before,
        "machine_before": machine_before,
        "machine_after": machine_after,
    }


def download(args: argparse.Namespace) -> dict[str, Any]:
    with FilesClient.connect(f"127.0.0.1:{args.port}", hash=args.hash) as files:

        def run() -> dict[str, Any]:
            done = files.download(
                args.source, Path(args.target), verify=args.verify, resume=False, force=True
            )
            return {"bytes": done.sent, "digest": done.digest, "hash": done.hash}

        return timed(run)


def upload(args: argparse.Namespace) -> dict[str, Any]:
    with FilesClient.connect(f"127.0.0.1:{args.port}", token=args.token, hash=args.hash) as files:

        def run() -> dict[str, Any]:
            done = files.upload(Path(args.source), args.target, verify=args.verify, force=True)
            return {"bytes": done.sent, "digest": done.digest, "hash": done.hash}

        return timed(run)


def sha256(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``hashlib.sha256`` over the file, read in 1 MiB chunks."""

    def run() -> dict[str, Any]:
        hasher = new_hasher("sha256")
        view = memoryview(bytearray(CHUNK))
        total = 0
        with open(args.file, "rb", buffering=0) as file:
            while got := file.readinto(view):
                hasher.update(view[:got])
                total += got
        return {"bytes": total, "digest": hasher.hexdigest(), "hash": "sha256"}

    return timed(run)


def blake3(args: argparse.Namespace) -> dict[str, Any]:
    """Time BLAKE3 alone: one 1 MiB piece of the file, in cache, hashed as many times as
    the file has pieces (the hash's own cost, as a receiver hashes what it just read)."""
    size = args.file.stat().st_size
    with open(args.file, "rb") as file:
        piece = memoryview(file.read(CHUNK))

    def run() -> dict[str, Any]:
        hasher = new_hasher("blake3")
        for start in range(0, size, CHUNK):
            hasher.update(piece[: min(CHUNK, size - start)])
        return {"bytes": size, "hash": "blake3"}

    return timed(run)


def write(args: argparse.Namespace) -> dict[str, Any]:
    block = os.urandom(CHUNK)

    def run() -> dict[str, Any]:
        left = args.size
        with open(args.file, "wb", buffering=0) as file:
            while left > 0:
                left -= file.write(block[: min(CHUNK, left)])
        return {"bytes": args.size}

    return timed(run)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hard-limit", type=float, default=300.0, help="seconds before exiting")
    modes = parser.add_subparsers(dest="mode", required=True)
    for name, source, target in (
        ("download", "remote name", "local path"),
        ("upload", "local path", "remote name"),
    ):
        mode = modes.add_parser(name)
        mode.add_argument("port", type=int)
        mode.add_argument("source", help=source)
        mode.add_argument("target", help=target)
        mode.add_argument("--verify", action="store_true", help="verification on")
        mode.add_argument("--hash", choices=HASHES, default=DEFAULT, help="verify with this")
        mode.add_argument("--token", help="the server's write token")
    modes.add_parser("sha256").add_argument("file", type=Path)
    modes.add_parser("blake3").add_argument("file", type=Path)
    writing = modes.add_parser("write")
    writing.add_argument("file", type=Path)
    writing.add_argument("--size", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the default action ends the process
    signal.setitimer(signal.ITIMER_REAL, args.hard_limit)
    modes: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "download": download,
        "upload": upload,
        "sha256": sha256,
        "blake3": blake3,
        "write": write,
    }
    result = modes[args.mode](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
