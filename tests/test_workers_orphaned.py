"""``serve --workers``: workers do not outlive a parent killed with SIGKILL (Linux)."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from support import WAIT, ServeProcess, wait_until
from test_cli import children_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_end_when_their_parent_is_killed(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0", "--workers", "2")
    workers = children_of(server.proc.pid)
    assert len(workers) == 2
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(WAIT)
    wait_until(lambda: not any(map(running, workers)), "the workers to end with their parent")
    endpoint = server.endpoints[0]
    with socket.socket() as probe:
        assert probe.connect_ex((endpoint.host or "127.0.0.1", endpoint.port)) != 0
