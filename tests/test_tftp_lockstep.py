"""Lock-step TFTP downloads on threads of their own, over real loopback sockets.

The server runs in this process (its event loop on a background thread), so
the tests can see its threads; the clients are curl, atftp, socketeer's own,
and a hand-driven socket that stops answering.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from socketeer.datagram import DatagramLimits
from socketeer.services.tftp.packets import Ack, Data, OAck, Request, parse
from socketeer.services.tftp.server import TftpServer
from socketeer.services.tftp.transfer import Settings
from socketeer.services.tftp.transfers import download
from support import WAIT, wait_until
from test_udp import UdpServer

SIZE = 3_000_000  # bytes: over 2,000 blocks of 1,428


def transfer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tftp ")]


class Tftp:
    """A TftpServer serving ``root`` on 127.0.0.1, with per-transfer sockets, in this process."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.core = TftpServer(root, settings=settings, limits=DatagramLimits(idle=WAIT))
        self.server = UdpServer(self.core, peer_sockets=True)
        self.port = self.server.port
        self.closed = False

    def running(self) -> int:
        """Transfers on threads now."""
        return int(self.server.call(lambda: self.core.threads.running))

    def transfers(self) -> int:
        return int(self.server.call(lambda: self.core.transfers))

    def close(self) -> None:
        """Stop the server (ending its transfers); a second call does nothing."""
        if not self.closed:
            self.closed = True
            self.server.call(self.core.close)
            self.server.stop()


@pytest.fixture
def tftp(tmp_path: Path) -> Iterator[Callable[..., Tftp]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(SIZE))
    started: list[Tftp] = []

    def start(**settings: Any) -> Tftp:
        started.append(Tftp(root, Settings(**settings)))
        return started[-1]

    yield start
    for server in started:
        server.close()
    assert transfer_threads() == []


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def watch_threads(during: Callable[[], object]) -> int:
    """Run ``during``; return the most transfer threads seen alive meanwhile."""
    seen = 0
    stop = threading.Event()

    def look() -> None:
        nonlocal seen
        while not stop.wait(0.002):
            seen = max(seen, len(transfer_threads()))

    watcher = threading.Thread(target=look)
    watcher.start()
    try:
        during()
    finally:
        stop.set()
        watcher.join(WAIT)
    return seen


@pytest.mark.parametrize("client", ["curl", "atftp"])
def test_a_lockstep_download_runs_on_a_thread_and_arrives_whole(
    tftp: Callable[..., Tftp], tmp_path: Path, client: str
) -> None:
    server = tftp()
    got = tmp_path / "got"
    if client == "curl":
        url = f"tftp://127.0.0.1:{server.port}/big.bin"
        args = [tool("curl"), "-sS", "--tftp-blksize", "1428", url, "-o", str(got)]
    else:
        args = [tool("atftp"), "--option", "blksize 1428", "-g", "-r", "big.bin", "-l", str(got)]
        args += ["127.0.0.1", str(server.port)]

    def fetch() -> None:
        result = subprocess.run(args, capture_output=True, timeout=WAIT * 3, check=False)
        assert result.returncode == 0, result.stderr

    assert watch_threads(fetch) == 1
    assert got.read_bytes() == (tmp_path / "root" / "big.bin").read_bytes()
    wait_until(lambda: server.transfers() == 0, "the transfer to be counted out")
    assert server.running() == 0


def test_downloads_beyond_the_thread_bound_run_on_the_loop(
    tftp: Callable[..., Tftp], tmp_path: Path
) -> None:
    server = tftp(threads=2)
    wanted = (tmp_path / "root" / "big.bin").read_bytes()
    sinks = [tmp_path / f"got{i}" for i in range(6)]

    async def fetch_all() -> list[int]:
        async def one(path: Path) -> int:
            with path.open("wb") as sink:
                return await download(
                    "127.0.0.1", server.port, "big.bin", sink, options={"blksize": "1428"}
                )

        return await asyncio.gather(*(one(path) for path in sinks))

    seen = watch_threads(lambda: asyncio.run(asyncio.wait_for(fetch_all(), WAIT * 3)))
    assert seen == 2
    assert [path.read_bytes() == wanted for path in sinks] == [True] * 6
    wait_until(lambda: server.transfers() == 0, "every transfer to be counted out")


def start_by_hand(port: int) -> socket.socket:
    """Ask for big.bin in lock-step and acknowledge the OACK and the first block.

    The socket returned is connected to the transfer's port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    request = Request(False, "big.bin", "octet", {"blksize": "1428"})
    sock.sendto(request.encode(), ("127.0.0.1", port))
    oack, transfer_port = sock.recvfrom(65_536)
    assert isinstance(parse(oack), OAck)
    sock.connect(transfer_port)
    sock.send(Ack(0).encode())
    first = parse(sock.recv(65_536))
    assert isinstance(first, Data)
    assert first.block == 1
    sock.send(Ack(1).encode())
    second = parse(sock.recv(65_536))
    assert isinstance(second, Data)
    assert second.block == 2
    return sock


def test_a_client_that_vanishes_frees_its_thread_after_the_retries(
    tftp: Callable[..., Tftp],
) -> None:
    server = tftp(timeout=0.05, retries=2)
    sock = start_by_hand(server.port)
    wait_until(lambda: server.running() == 1, "the transfer to move to a thread")
    sock.close()  # gone: its port answers with ICMP "port unreachable", or not at all
    # 0.05 s, then 0.1 and 0.2 s of retries, plus a receive's wait: well under WAIT.
    wait_until(lambda: server.running() == 0, "the thread to give up")
    wait_until(lambda: server.transfers() == 0, "the transfer to be counted out")
    assert transfer_threads() == []


def test_a_silent_client_is_retransmitted_to_from_the_thread(
    tftp: Callable[..., Tftp],
) -> None:
    server = tftp(timeout=0.05, retries=3)
    sock = start_by_hand(server.port)
    again = parse(sock.recv(65_536))  # block 2 again, after the timeout
    assert isinstance(again, Data)
    assert again.block == 2
    assert server.running() == 1
    sock.close()


def test_the_thread_never_answers_a_duplicate_or_stale_ack(tftp: Callable[..., Tftp]) -> None:
    server = tftp(timeout=30)  # no retransmission during the test
    sock = start_by_hand(server.port)
    wait_until(lambda: server.running() == 1, "the transfer to move to a thread")
    for block in (2, 2, 2, 1):  # the ACK, two duplicates of it and a stale one
        sock.send(Ack(block).encode())
    third = parse(sock.recv(65_536))
    assert isinstance(third, Data)
    assert third.block == 3
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):  # the Sorcerer's Apprentice would send block 3 again
        sock.recv(65_536)
    sock.settimeout(WAIT)
    sock.send(Ack(3).encode())
    fourth = parse(sock.recv(65_536))
    assert isinstance(fourth, Data)
    assert fourth.block == 4
    sock.close()


def test_stopping_the_server_ends_the_threads_promptly(tftp: Callable[..., Tftp]) -> None:
    server = tftp(timeout=30, retries=5)  # a silent client would hold its thread for minutes
    sock = start_by_hand(server.port)
    wait_until(lambda: server.running() == 1, "the transfer to move to a thread")
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.5
    assert transfer_threads() == []
    sock.close()
