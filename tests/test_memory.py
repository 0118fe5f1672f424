"""What an idle connection costs the server: at most 64 KiB of memory, for every service.

A real ``socketeer serve`` process; the test opens connections that say
nothing (over TLS: that finished their handshake, then say nothing) and
reads the server's resident memory from /proc before and after.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support import WAIT, ServeProcess, ServerProcess

#: The most an idle connection may cost the server.
BUDGET = 64 * 1024
WARM, IDLE = 100, 400


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_sockets(pid: int) -> int:
    return sum(1 for fd in os.listdir(f"/proc/{pid}/fd") if _is_socket(pid, fd))


def _is_socket(pid: int, fd: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    except OSError:
        return False


def settle(pid: int, sockets: int) -> int:
    """Wait until the server holds ``sockets`` sockets and its memory stops moving."""
    deadline = time.monotonic() + WAIT
    while open_sockets(pid) < sockets:
        assert time.monotonic() < deadline, "the server did not accept every connection"
        time.sleep(0.01)
    before = rss(pid)
    while True:
        time.sleep(0.2)
        now = rss(pid)
        if now == before or time.monotonic() > deadline:
            return now
        before = now


def idle_cost(server: ServerProcess, connect: Callable[[], socket.socket]) -> float:
    """Bytes of the server's memory per idle connection, past the first ``WARM``."""
    pid = server.proc.pid
    listening = open_sockets(pid)
    held: list[socket.socket] = []
    try:
        for _ in range(WARM):
            held.append(connect())
        before = settle(pid, listening + WARM)
        for _ in range(IDLE):
            held.append(connect())
        after = settle(pid, listening + WARM + IDLE)
        return (after - before) / IDLE
    finally:
        for sock in held:
            sock.close()


def keep_alive(host: str, port: int) -> socket.socket:
    """A connection that asked for one file over HTTP, got it, and now says nothing."""
    sock = socket.create_connection((host, port), WAIT)
    sock.settimeout(WAIT)
    sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"\r\n\r\nhello"):
        got = sock.recv(65536)
        assert got, "the server closed a keep-alive connection"
        answer += got
    return sock


def test_an_idle_http_keep_alive_connection_costs_at_most_64_kib(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    (tmp_path / "small").write_bytes(b"hello")
    server = serve_process(
        "serve", "files", str(tmp_path), "127.0.0.1:0", "--idle-timeout", "0", "-q"
    )
    (endpoint,) = server.endpoints
    assert endpoint.host is not None
    host, port = endpoint.host, endpoint.port
    per_connection = idle_cost(server, lambda: keep_alive(host, port))
    assert per_connection <= BUDGET, f"{per_connection / 1024:.1f} KiB per idle connection"


def serve_args(service: str, endpoint: str, root: Path) -> list[str]:
    args = ["serve", service, endpoint, "--idle-timeout", "0", "-q"]
    if service == "files":
        args.insert(2, str(root))
    return args


@pytest.mark.parametrize("service", ["greet", "echo", "files", "chat"])
def test_an_idle_connection_costs_at_most_64_kib(
    serve_process: ServeProcess, service: str, tmp_path: Path
) -> None:
    server = serve_process(*serve_args(service, "127.0.0.1:0", tmp_path))
    (endpoint,) = server.endpoints
    per_connection = idle_cost(
        server, lambda: socket.create_connection((endpoint.host, endpoint.port), WAIT)
    )
    assert per_connection <= BUDGET, f"{service}: {per_connection / 1024:.1f} KiB per connection"


@pytest.mark.parametrize("service", ["greet", "files", "chat"])
def test_an_idle_tls_connection_costs_at_most_64_kib(
    serve_process: ServeProcess, service: str, tmp_path: Path
) -> None:
    server = serve_process(*serve_args(service, "tls://127.0.0.1:0", tmp_path))
    (endpoint,) = server.endpoints
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def connect() -> socket.socket:
        sock = socket.create_connection((endpoint.host, endpoint.port), WAIT)
        return context.wrap_socket(sock)  # the handshake is over when this returns

    per_connection = idle_cost(server, connect)
    assert per_connection <= BUDGET, (
        f"{service} over TLS: {per_connection / 1024:.1f} KiB per connection"
    )


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def websocket(address: tuple[str, int]) -> socket.socket:
    """A WebSocket to the chat that has joined nothing and says nothing more."""
    sock = socket.create_connection(address, WAIT)
    sock.sendall(UPGRADE)
    sock.settimeout(WAIT)
    answer = b""
    while b"choose a nickname" not in answer:
        data = sock.recv(4096)
        assert data, answer
        answer += data
    assert answer.startswith(b"HTTP/1.1 101 ")
    return sock


def test_an_idle_websocket_costs_at_most_64_kib(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0", "--idle-timeout", "0", "-q")
    (endpoint,) = server.endpoints
    assert endpoint.host is not None
    address = (endpoint.host, endpoint.port)
    pid = server.proc.pid
    listening = open_sockets(pid)
    held: list[socket.socket] = []
    count = 1000
    try:
        for _ in range(WARM):
            held.append(websocket(address))
        before = settle(pid, listening + WARM)
        for _ in range(count):
            held.append(websocket(address))
        after = settle(pid, listening + WARM + count)
        per_connection = (after - before) / count
        assert per_connection <= BUDGET, f"{per_connection / 1024:.1f} KiB per idle WebSocket"
    finally:
        for sock in held:
            sock.close()


def half_request(address: tuple[str, int]) -> socket.socket:
    """A connection to the chat that sent an HTTP request line and one header, then nothing."""
    sock = socket.create_connection(address, WAIT)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
    return sock


def test_an_idle_half_sent_http_request_to_the_chat_costs_at_most_64_kib(
    serve_process: ServeProcess,
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0", "--idle-timeout", "0", "-q")
    (endpoint,) = server.endpoints
    assert endpoint.host is not None
    address = (endpoint.host, endpoint.port)
    per_connection = idle_cost(server, lambda: half_request(address))
    assert per_connection <= BUDGET, f"{per_connection / 1024:.1f} KiB per half-sent request"


#: What a client that sends requests without reading the answers may cost the server.
PIPELINE_BUDGET = 384 * 1024


def flood(address: tuple[str, int], request: bytes, most: int) -> socket.socket:
    """A connection that sends up to ``most`` bytes of requests and never reads an answer."""
    sock = socket.create_connection(address, WAIT)
    sock.setblocking(False)
    data = request * (most // len(request))
    sent, stalled = 0, time.monotonic()
    while sent < len(data) and time.monotonic() - stalled < 0.3:
        try:
            sent += sock.send(data[sent : sent + 65536])
            stalled = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)  # the server stopped reading (or has not read yet)
    return sock


@pytest.mark.parametrize("service", ["files", "chat"])
def test_a_client_that_pipelines_requests_and_never_reads_costs_little(
    serve_process: ServeProcess, service: str, tmp_path: Path
) -> None:
    (tmp_path / "big").write_bytes(os.urandom(4 * 1024 * 1024))
    server = serve_process(*serve_args(service, "127.0.0.1:0", tmp_path))
    (endpoint,) = server.endpoints
    assert endpoint.host is not None
    address = (endpoint.host, endpoint.port)
    target = b"/big" if service == "files" else b"/"
    request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    pid = server.proc.pid
    listening = open_sockets(pid)
    held: list[socket.socket] = []
    warm, count = 5, 20
    try:
        for _ in range(warm):
            held.append(flood(address, request, 8 * 1024 * 1024))
        before = settle(pid, listening + warm)
        for _ in range(count):
            held.append(flood(address, request, 8 * 1024 * 1024))
        after = settle(pid, listening + warm + count)
        per_connection = (after - before) / count
        assert per_connection <= PIPELINE_BUDGET, (
            f"{service}: {per_connection / 1024:.0f} KiB per connection that never reads"
        )
    finally:
        for sock in held:
            sock.close()
