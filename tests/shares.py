"""Files-test support: a files server in this process, and what its tests compare."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from socketeer import Endpoint
from socketeer.services.files import FilesService
from socketeer.services.files.client import FilesClient
from support import WAIT, ThreadedServer, wait_until

TOKEN = "s3cret"


@dataclass
class Share:
    """A files server in this process, sharing ``root``."""

    root: Path
    endpoint: Endpoint
    threaded: ThreadedServer
    service: FilesService
    running: bool = True

    def connect(self, token: str | None = TOKEN, hash: str = "sha256") -> FilesClient:
        """A client; SHA-256 unless ``hash`` says, so tests can compare with hashlib."""
        return FilesClient.connect(self.endpoint, token=token, timeout=WAIT, hash=hash)

    def settled(self) -> bool:
        """No connection is open and nothing the server started is still running."""

        def check() -> bool:
            me = asyncio.current_task()
            running = [task for task in asyncio.all_tasks() if task is not me]
            return self.threaded.server.session_count == 0 and not running

        return bool(self.threaded.call(check))

    def wait_settled(self) -> None:
        wait_until(self.settled, "the server to finish with every connection")

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.threaded.stop()


ServeShare = Callable[..., Share]


def write(path: Path, data: bytes, mtime: float | None = None) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (compared instead of megabytes of bytes)."""
    return sha256(path.read_bytes())


def partial_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.socketeer-part")


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Everything under ``root``: files as bytes, directories as None, symlinks as their target."""
    found: dict[str, bytes | str | None] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = os.readlink(path)
            elif path.is_dir():
                found[key] = None
            else:
                found[key] = path.read_bytes()
    return found
