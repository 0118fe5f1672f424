"""The files commands as processes: run one, on pipes or on a terminal, and what it left."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from socketeer import Endpoint
from support import WAIT, socketeer_command


def environment(token: str | None = None) -> dict[str, str]:
    """This process's environment, with SOCKETEER_TOKEN set to ``token`` or removed."""
    env = {name: value for name, value in os.environ.items() if name != "SOCKETEER_TOKEN"}
    if token is not None:
        env["SOCKETEER_TOKEN"] = token
    return env


def socketeer(
    *args: str | Path | Endpoint,
    token: str | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``socketeer ARGS`` with stdout and stderr piped (not a terminal), stdin ``input``."""
    result = subprocess.run(
        socketeer_command(*map(str, args)),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env=environment(token),
        cwd=cwd,
        timeout=WAIT,
        check=False,
    )
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def succeeds(
    *args: str | Path | Endpoint, token: str | None = None, cwd: Path | None = None
) -> str:
    """Run a command that must succeed quietly; return its stdout."""
    result = socketeer(*args, token=token, cwd=cwd)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", "nothing on stderr when it is not a terminal"
    return result.stdout.decode()


def on_a_terminal(
    *args: str | Path | Endpoint, token: str | None = None, cwd: Path | None = None
) -> str:
    """Run ``socketeer ARGS`` with stdout and stderr on a pseudo-terminal; return what it showed."""
    return _on_a_terminal(args, token, cwd, pipe_stdout=False)[0]


def stderr_on_a_terminal(
    *args: str | Path | Endpoint, token: str | None = None, cwd: Path | None = None
) -> tuple[str, bytes]:
    """Run ``socketeer ARGS`` with stderr on a pseudo-terminal and stdout on a pipe.

    Returns what the terminal showed and what went to stdout.
    """
    return _on_a_terminal(args, token, cwd, pipe_stdout=True)


def _on_a_terminal(
    args: tuple[str | Path | Endpoint, ...],
    token: str | None,
    cwd: Path | None,
    *,
    pipe_stdout: bool,
) -> tuple[str, bytes]:
    main, secondary = pty.openpty()
    env = {**environment(token), "COLUMNS": "200", "TERM": "xterm"}
    proc = subprocess.Popen(
        socketeer_command(*map(str, args)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipe_stdout else secondary,
        stderr=secondary,
        env=env,
        cwd=cwd,
    )
    os.close(secondary)
    received = {main: b"", **({proc.stdout.fileno(): b""} if proc.stdout else {})}
    open_ends = set(received)
    deadline = time.monotonic() + WAIT
    try:
        while open_ends:
            ready, _, _ = select.select(
                list(open_ends), [], [], max(deadline - time.monotonic(), 0)
            )
            if not ready:
                proc.kill()
                raise AssertionError(f"the command did not finish; it showed {received[main]!r}")
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal has ended
                    chunk = b""
                if chunk:
                    received[fd] += chunk
                else:
                    open_ends.discard(fd)
    finally:
        os.close(main)
        if proc.stdout is not None:
            proc.stdout.close()
    shown = received.pop(main).decode(errors="replace")
    assert proc.wait(WAIT) == 0, shown
    assert "Traceback" not in shown, shown
    return shown, b"".join(received.values())


def user_directory(tmp_path: Path) -> Path:
    """The user's current directory (beside the share), empty."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
