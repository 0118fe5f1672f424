"""Trees of small files for ``benchmarks/files.py``: socketeer against rsync and ``tar | nc``.

A tree of ``--tree-files`` files of ``--tree-size`` bytes each (100 to a
directory) is made once beside the big file; each measurement copies it
whole into an empty directory (or, uploading, into an empty directory the
server shares), checks every file of the copy, and removes the copy:

- ``rsync -r rsync://127.0.0.1:PORT/mod/tree/ DEST/`` against an rsync
  daemon (``rsync --daemon --no-detach --config=FILE --port=PORT``), and
  ``rsync -r tree/ rsync://127.0.0.1:PORT/mod/up/`` the other way;
- ``tar -c tree | nc -N 127.0.0.1 PORT`` into ``nc -l 127.0.0.1 PORT | tar -x``
  (one way: a tarball has nothing to go back the other way);
- ``socketeer get -r -q`` and ``socketeer put -r -q`` against the files
  server the big file's measurements use.

Every command is timed from spawning it to its exit (``tar | nc`` from
spawning the sender until the receiving ``tar`` exits), so each includes
its own start: for socketeer that is a Python interpreter importing the
command line, measured alone by the ``socketeer --version`` row.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from machine import BenchmarkError

__all__ = ["Tree", "free_port", "make_tree", "rsync_config", "same_tree", "wait_listening"]

PER_DIRECTORY = 100


@dataclass(frozen=True)
class Tree:
    """The tree (``root/tree`` inside the served directory): how many files, how many bytes."""

    root: Path
    files: int
    nbytes: int

    @property
    def path(self) -> Path:
        return self.root / "tree"


def make_tree(served: Path, files: int, size: int) -> Tree:
    """``files`` files of ``size`` random bytes under ``served/tree``, 100 to a directory."""
    for i in range(files):
        directory = served / "tree" / f"d{i // PER_DIRECTORY:03}"
        if i % PER_DIRECTORY == 0:
            directory.mkdir(parents=True)
        (directory / f"f{i % PER_DIRECTORY:03}").write_bytes(os.urandom(size))
    return Tree(served, files, files * size)


def same_tree(tree: Tree, copy: Path, what: str) -> None:
    """``copy`` must hold exactly the tree's files; it is removed either way."""
    try:
        found = 0
        for directory, _, names in os.walk(copy):
            for name in names:
                mine = Path(directory, name)
                theirs = tree.path / mine.relative_to(copy)
                if mine.read_bytes() != theirs.read_bytes():
                    raise BenchmarkError(f"{what}: {mine.relative_to(copy)} differs")
                found += 1
        if found != tree.files:
            raise BenchmarkError(f"{what}: copied {found} of {tree.files} files")
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def free_port() -> int:
    """A loopback port nobody listens on now (another process could take it meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rsync_config(directory: Path, served: Path) -> Path:
    """An rsync daemon's configuration: module ``mod`` is ``served``, writable."""
    config = directory / "rsyncd.conf"
    config.write_text(
        f"uid = {os.getuid()}\ngid = {os.getgid()}\n"  # as the runner, not nobody
        "use chroot = no\n"
        f"pid file = {directory / 'rsyncd.pid'}\n"
        f"[mod]\npath = {served}\nread only = false\n"
    )
    return config


def wait_listening(port: int, timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until something listens on 127.0.0.1:``port`` (seen in ``ss``, not connected to)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
        if "LISTEN" in shown:
            return
        if not alive():
            raise BenchmarkError(f"the listener on port {port} exited")
        time.sleep(0.01)  # bounded by the deadline
    raise BenchmarkError(f"nothing listened on port {port} within {timeout:g}s")


@contextlib.contextmanager
def scratch(parent: Path, name: str) -> Iterator[Path]:
    """An empty directory ``parent/name``, removed afterwards."""
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
