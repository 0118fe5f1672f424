"""Behind a real HAProxy (Debian's) in TCP mode: two socketeer processes, PROXY v2 and v1.

TLS passes through HAProxy untouched to ``tls://`` endpoints after the header.

HAProxy connects to the backends from 127.0.0.3 (``source``), clients from
127.0.0.1 or 127.0.0.2, so a log or a limit that used the balancer's address
instead of the client's would show.  The configuration is docs/deployment.md's.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from files_commands import socketeer as files_cli
from support import WAIT, ServeProcess, ServerProcess, recv_all, wait_until
from tls_support import Certificates, make_certificates

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")

BALANCER_SOURCE = "127.0.0.3"

CONFIG = """\
global
    maxconn 200

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend socketeer
    bind 127.0.0.1:{port}
    default_backend servers

backend servers
    balance {balance}
{servers}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Balancer = Callable[..., int]


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Balancer]:
    """Factory: ``haproxy(backends, send="send-proxy-v2", balance="roundrobin") -> port``."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        backends: list[ServerProcess], send: str = "send-proxy-v2", balance: str = "roundrobin"
    ) -> int:
        port = free_port()
        servers = "\n".join(
            f"    server s{n} 127.0.0.1:{b.endpoints[0].port} {send} source {BALANCER_SOURCE}"
            for n, b in enumerate(backends, 1)
        )
        config = tmp_path / "haproxy.cfg"
        config.write_text(CONFIG.format(port=port, balance=balance, servers=servers))
        with (tmp_path / "haproxy.log").open("wb") as log:
            proc = subprocess.Popen(
                ["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=log
            )
        started.append(proc)

        def listening() -> bool:
            assert proc.poll() is None, (tmp_path / "haproxy.log").read_text()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, "haproxy to listen")
        return port

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)


def greet(port: int, name: bytes, source: str = "127.0.0.2") -> tuple[bytes, int]:
    """What a greet client from ``source`` gets for ``name``, and its own port."""
    with socket.create_connection(("127.0.0.1", port), WAIT, source_address=(source, 0)) as s:
        s.sendall(name + b"\n")
        s.shutdown(socket.SHUT_WR)
        return recv_all(s), s.getsockname()[1]


def logged_from(backends: list[ServerProcess]) -> str:
    return "".join(b.stderr() for b in backends)


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_greet_behind_haproxy_logs_the_clients_address(
    serve_process: ServeProcess, haproxy: Balancer, send: str
) -> None:
    backends = [
        serve_process("serve", "greet", "127.0.0.1:0", "--proxy-protocol") for _ in range(2)
    ]
    port = haproxy(backends, send)
    ports = []
    for name in (b"ann", b"bob", b"cy", b"di"):
        reply, client_port = greet(port, name)
        assert reply == b"welcome!\nhello, " + name + b"!\n"
        ports.append(client_port)
    wait_until(
        lambda: all(f"closed 127.0.0.2:{p}" in logged_from(backends) for p in ports), "the logs"
    )
    for backend in backends:  # round robin: both served, each logging real clients
        assert "connection from 127.0.0.2:" in backend.stderr()
    assert BALANCER_SOURCE not in logged_from(backends)


def test_limits_and_deny_count_the_client_behind_haproxy(
    serve_process: ServeProcess, haproxy: Balancer
) -> None:
    args = ("--proxy-protocol", "--max-conns-per-ip", "1", "--deny", "127.0.0.5")
    backends = [serve_process("serve", "greet", "127.0.0.1:0", *args) for _ in range(2)]
    port = haproxy(backends, balance="source")  # one client address, one backend
    with socket.create_connection(("127.0.0.1", port), WAIT, source_address=("127.0.0.2", 0)) as s:
        assert s.recv(100) == b"welcome!\n"
        again, _ = greet(port, b"x", "127.0.0.2")
        assert again == b"error: too many connections from 127.0.0.2 (at most 1)\n"
        other, _ = greet(port, b"y", "127.0.0.4")
        assert other == b"welcome!\nhello, y!\n", "the balancer's address is not what counts"
    denied, _ = greet(port, b"z", "127.0.0.5")
    assert denied == b""
    assert "refused 127.0.0.5:" in logged_from(backends)


def test_files_behind_haproxy(
    serve_process: ServeProcess, haproxy: Balancer, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_bytes(b"alpha\n" * 1000)
    backends = [
        serve_process("serve", "files", str(share), "127.0.0.1:0", "--proxy-protocol")
        for _ in range(2)
    ]
    port = haproxy(backends)
    for n in range(2):  # one transfer through each backend
        target = tmp_path / f"copy{n}.txt"
        result = files_cli("get", f"127.0.0.1:{port}", "a.txt", str(target))
        assert result.returncode == 0, result.stderr
        assert target.read_bytes() == (share / "a.txt").read_bytes()
    wait_until(
        lambda: all("connection from 127.0.0.1:" in b.stderr() for b in backends), "log lines"
    )
    assert BALANCER_SOURCE not in logged_from(backends)


def test_chat_behind_haproxy(serve_process: ServeProcess, haproxy: Balancer) -> None:
    backends = [
        serve_process("serve", "chat", "127.0.0.1:0", "--proxy-protocol", "--max-conns-per-ip", "1")
        for _ in range(2)
    ]
    port = haproxy(backends, balance="source")
    with socket.create_connection(("127.0.0.1", port), WAIT, source_address=("127.0.0.2", 0)) as s:
        s.sendall(b"ann\n")
        said = b""
        deadline = time.monotonic() + WAIT
        while b"ann" not in said and time.monotonic() < deadline:
            said += s.recv(4096)
        assert b"ann" in said
        second, _ = greet(port, b"bob", "127.0.0.2")
        assert b"too many connections from 127.0.0.2" in second
    assert "connection from 127.0.0.2:" in logged_from(backends)
    assert BALANCER_SOURCE not in logged_from(backends)


# TLS from the client to socketeer, through HAProxy (mode tcp) -----------------------------


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


def tls_options(certs: Certificates) -> tuple[str, ...]:
    return ("--proxy-protocol", "--tls-cert", str(certs.cert), "--tls-key", str(certs.key))


def tls_client(port: int, certs: Certificates, source: str) -> ssl.SSLSocket:
    """A TLS connection through the balancer from ``source``, its handshake done."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    sock = socket.create_connection(("127.0.0.1", port), WAIT, source_address=(source, 0))
    try:
        return context.wrap_socket(sock, server_hostname="127.0.0.1")
    except BaseException:
        sock.close()
        raise


def refused_during_handshake(port: int, certs: Certificates, source: str) -> bool:
    """Whether the server closes a TLS client from ``source`` before the handshake ends."""
    try:
        tls_client(port, certs, source).close()
    except (ssl.SSLError, ConnectionError):
        return True
    return False


def test_greet_over_tls_behind_haproxy_knows_the_client(
    serve_process: ServeProcess, haproxy: Balancer, certs: Certificates
) -> None:
    backend = serve_process(
        "serve", "greet", "tls://127.0.0.1:0", *tls_options(certs), "--deny", "127.0.0.5"
    )
    port = haproxy([backend])
    with tls_client(port, certs, "127.0.0.2") as conn:
        client_port = conn.getsockname()[1]
        conn.sendall(b"ann\n")
        reply = b""
        while not reply.endswith(b"ann!\n"):
            chunk = conn.recv(100)
            assert chunk, reply
            reply += chunk
        assert reply == b"welcome!\nhello, ann!\n"
    wait_until(lambda: f"closed 127.0.0.2:{client_port}" in backend.stderr(), "the log")
    assert f"connection from 127.0.0.2:{client_port} (TLS)" in backend.stderr()
    assert refused_during_handshake(port, certs, "127.0.0.5")
    wait_until(lambda: "refused 127.0.0.5:" in backend.stderr(), "the refusal's log line")
    assert BALANCER_SOURCE not in backend.stderr()


def test_files_over_tls_behind_haproxy_knows_the_client(
    serve_process: ServeProcess, haproxy: Balancer, certs: Certificates, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_bytes(b"alpha\n" * 100_000)
    options = (*tls_options(certs), "--deny", "127.0.0.5")
    backend = serve_process("serve", "files", str(share), "tls://127.0.0.1:0", *options)
    port = haproxy([backend])
    target = tmp_path / "copy.txt"
    where = f"tls://127.0.0.1:{port}"
    result = files_cli("get", where, "a.txt", str(target), "--tls-ca", str(certs.ca))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == (share / "a.txt").read_bytes()
    wait_until(lambda: "connection from 127.0.0.1:" in backend.stderr(), "the log line")
    assert refused_during_handshake(port, certs, "127.0.0.5")
    wait_until(lambda: "refused 127.0.0.5:" in backend.stderr(), "the refusal's log line")
    assert BALANCER_SOURCE not in backend.stderr()
