"""Test support: socketeer servers in a background thread or as a real process."""

from __future__ import annotations

import asyncio
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from socketeer import Endpoint, Server, ServerConfig, parse_endpoint
from socketeer.service import Service

WAIT = 10.0  # seconds any single wait in a test may take before it fails

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < min(hard, 8192):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


class ThreadedServer:
    """A :class:`Server` on its own event loop in a background thread."""

    def __init__(self, service: Service, endpoints: list[str], config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(service, [parse_endpoint(e) for e in endpoints], config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> list[Endpoint]:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(WAIT)

    def call(self, fn: object) -> object:
        """Run a plain function on the server's loop and return its result."""

        async def run() -> object:
            assert callable(fn)
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def stop(self, grace: float = 0.0) -> None:
        if self.loop.is_closed():  # stopped already
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(WAIT + grace)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


def socketeer_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "socketeer", *args]


class ServerProcess:
    """``socketeer serve ...`` as a real process; knows its bound endpoints."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self._stderr_file = stderr_path.open("wb")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            socketeer_command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
        )
        self.endpoints: list[Endpoint] = []

    def wait_listening(self, count: int = 1) -> list[Endpoint]:
        """Read ``listening on`` lines from stdout until ``count`` have arrived."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + WAIT
        while len(self.endpoints) < count:
            line = read_line(self.proc.stdout, deadline)
            if not line:
                raise AssertionError(f"server ended before listening: {self.stderr()}")
            text = line.decode().strip()
            assert text.startswith("listening on "), text
            self.endpoints.append(parse_endpoint(text.removeprefix("listening on ")))
        return self.endpoints

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(WAIT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr_file.close()


#: The tutorial programs, runnable (typos and ports fixed only).
SEEDS = Path(__file__).parent / "seeds"


def run_seed(name: str, *args: str, input: bytes | None = None) -> str:
    """Run a tutorial program to its end; return what it printed."""
    result = subprocess.run(
        [sys.executable, str(SEEDS / name), *args],
        input=input,
        capture_output=True,
        timeout=WAIT,
        check=True,
    )
    return result.stdout.decode()


def recv_all(sock: socket.socket) -> bytes:
    """Everything a socket receives until the peer closes (the socket's timeout applies)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_line(stream: IO[bytes], deadline: float) -> bytes:
    """One line from a pipe, or fail the test when ``deadline`` passes."""
    fd = stream.fileno()
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        if not ready:
            raise AssertionError(f"timed out waiting for a line (got {line!r})")
        byte = os.read(fd, 1)
        if not byte:
            return line
        line += byte
    return line


def run_cli(
    *args: str, input: bytes | None = None, timeout: float = WAIT
) -> subprocess.CompletedProcess[bytes]:
    """Run ``socketeer ARGS`` to completion with stdin = ``input`` (or /dev/null)."""
    return subprocess.run(
        socketeer_command(*args),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


ServeInThread = Callable[..., tuple[ThreadedServer, list[Endpoint]]]
ServeProcess = Callable[..., ServerProcess]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def assert_one_line_error(result: subprocess.CompletedProcess[bytes], code: int, text: str) -> None:
    """The command failed with exit ``code`` and one line ``socketeer: error: ...TEXT...``."""
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.count("\n") == 1, f"expected one line, got: {err!r}"
    assert err.startswith("socketeer: error: "), err
    assert text in err, err
    assert "Traceback" not in err
