"""Netcat-test support: ``socketeer listen`` as a process, and plain-socket peers in a thread."""

from __future__ import annotations

import concurrent.futures
import hashlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Generic, TypeVar

from socketeer import Endpoint, parse_endpoint
from support import WAIT, read_line, socketeer_command

T = TypeVar("T")


class ListenProcess:
    """``socketeer listen ARGS`` with pipes for stdout and stderr (and stdin unless given)."""

    def __init__(self, *args: str, stdin: IO[bytes] | int = subprocess.PIPE) -> None:
        self.proc = subprocess.Popen(
            socketeer_command("listen", *args),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        line = read_line(self.proc.stderr, time.monotonic() + WAIT).decode()
        assert line.startswith("listening on "), line
        self.endpoint: Endpoint = parse_endpoint(line.strip().removeprefix("listening on "))

    def finish(self, timeout: float = WAIT) -> tuple[bytes, int]:
        """Wait for the end; return what it printed on stdout and its exit code."""
        out, err = self.proc.communicate(timeout=timeout)
        self.err = err.decode()
        return out, self.proc.returncode


@dataclass(frozen=True)
class Received:
    """What a peer read before the end of the stream: a byte count and a SHA-256."""

    size: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Received:
        return cls(len(data), hashlib.sha256(data).hexdigest())


def read_to_end(conn: socket.socket) -> Received:
    """Read until the other side half-closes; count and hash what came."""
    digest = hashlib.sha256()
    size = 0
    while chunk := conn.recv(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return Received(size, digest.hexdigest())


def half_close_then_read(conn: socket.socket) -> Received:
    """``nc -l < /dev/null``: say nothing, half-close at once, then read everything."""
    conn.shutdown(socket.SHUT_WR)
    return read_to_end(conn)


def reset_after(size: int, *, half_close: bool) -> Callable[[socket.socket], int]:
    """A peer that reads ``size`` bytes and then resets the connection (SO_LINGER 0)."""

    def behave(conn: socket.socket) -> int:
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        got = 0
        while got < size and (chunk := conn.recv(min(64 * 1024, size - got))):
            got += len(chunk)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return got

    return behave


def say_then_close(data: bytes) -> Callable[[socket.socket], None]:
    """A peer that sends ``data`` and closes without reading anything."""

    def behave(conn: socket.socket) -> None:
        conn.sendall(data)

    return behave


class Peer(Generic[T]):
    """A TCP server on 127.0.0.1 that takes one connection and runs ``behave`` on it."""

    def __init__(self, behave: Callable[[socket.socket], T]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self._outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._behave = behave
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
            with conn:
                conn.settimeout(WAIT)
                self._outcome.set_result(self._behave(conn))
        except BaseException as exc:
            self._outcome.set_exception(exc)
        finally:
            self._listener.close()

    def outcome(self, timeout: float = WAIT) -> T:
        """What ``behave`` returned (or raised), once the connection is done."""
        return self._outcome.result(timeout)
