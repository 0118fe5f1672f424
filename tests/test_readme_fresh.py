"""The README followed line by line, in a fresh virtual environment, as a newcomer would."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
README_ADDRESS = "127.0.0.1:1234"
INSTALL_WAIT = 150.0  # a fresh venv and pip install; about 10 s with a warm pip cache
WAIT = 10.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_WAIT + 30)]


def first_command() -> str:
    """The README's first line: install socketeer and start the greet server."""
    block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()[0]


def send_example() -> tuple[list[str], list[str]]:
    """The ``socketeer send`` example under "Talk to the greet server": argv and output."""
    section = README.split("## Talk to the greet server", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$ socketeer send "))
    output = []
    for line in lines[start + 1 :]:
        if line.startswith("$ "):
            break
        output.append(line)
    return shlex.split(lines[start][2:]), output


def read_until_listening(process: subprocess.Popen[bytes], deadline: float) -> str:
    """Wait for the server's ``listening on ADDRESS`` line and return ADDRESS."""
    assert process.stdout is not None
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            match = re.search(rb"listening on (\S+)\n", seen)
            if match:
                return match.group(1).decode()
        elif process.poll() is not None:
            break
    raise AssertionError(f"the README's server did not start; it printed {seen!r}")


def test_readme_first_command_serves_greet_and_send_example_matches(tmp_path: Path) -> None:
    command = first_command()
    assert README_ADDRESS in command
    # The one change to the README's command: port 0 instead of 1234, so the
    # system picks a free port (the server prints the one it got).
    command = command.replace(README_ADDRESS, "127.0.0.1:0")
    argv, expected = send_example()
    assert argv[:3] == ["socketeer", "send", README_ADDRESS]

    # "." in the command is the checkout: a copy of the working tree, so the
    # README's `.venv` is made there and not over the developer's own.
    checkout = tmp_path / "socketeer"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "site", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("wb") as stderr:
        server = subprocess.Popen(
            ["bash", "-c", command],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, to stop what it started
        )
    try:
        address = read_until_listening(server, time.monotonic() + INSTALL_WAIT)
        sent = subprocess.run(
            [str(checkout / ".venv" / "bin" / "socketeer"), "send", address, *argv[3:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines() == expected
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=WAIT) == 0, stderr_path.read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=WAIT)
        if server.stdout is not None:
            server.stdout.close()
