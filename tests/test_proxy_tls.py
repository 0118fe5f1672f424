"""``--proxy-protocol`` on ``tls://`` endpoints, over loopback: the header, then the handshake.

The balancer relays the client's TLS untouched after its PROXY header, often
in the same segment: the server must hand what it read after the header to
the handshake, and use the header's address for the client from then on.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from pathlib import Path

import pytest

from socketeer.access import AccessSources
from socketeer.proxy import encode_v2
from support import WAIT, ServeInThread, recv_all, wait_until
from tls_support import Certificates, make_certificates

CLIENT = ("198.51.100.7", 40001)


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


class MemoryClient:
    """A TLS client whose bytes the test sends itself, so the first can share a write."""

    def __init__(self, certs: Certificates, sock: socket.socket) -> None:
        context = ssl.create_default_context(cafile=str(certs.ca))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.sock = sock

    def client_hello(self) -> bytes:
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        hello = self.outgoing.read()
        assert hello[:1] == b"\x16", "a TLS handshake record"
        return hello

    def finish_handshake(self) -> None:
        while True:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection during the handshake"
            self.incoming.write(data)
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                continue
            self.sock.sendall(self.outgoing.read())
            return

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def receive_until(self, end: bytes) -> bytes:
        got = b""
        while not got.endswith(end):
            try:
                got += self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                assert data, f"closed after {got!r}"
                self.incoming.write(data)
        return got


def greet_behind_a_balancer(
    serve_in_thread: ServeInThread, certs: Certificates, **config: object
) -> int:
    _, (bound,) = serve_in_thread(
        "greet", ["tls://127.0.0.1:0"], tls=certs.server(), proxy_protocol=True, **config
    )
    assert bound.port is not None
    return bound.port


def test_the_header_and_the_client_hello_in_one_write_complete_the_handshake(
    serve_in_thread: ServeInThread, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "socketeer.server")
    port = greet_behind_a_balancer(serve_in_thread, certs)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        client = MemoryClient(certs, sock)
        sock.sendall(encode_v2(CLIENT, ("192.0.2.1", 1234)) + client.client_hello())
        client.finish_handshake()
        assert client.receive_until(b"\n") == b"welcome!\n"
        client.send(b"ann\n")
        assert client.receive_until(b"\n") == b"hello, ann!\n"
    wait_until(lambda: "closed 198.51.100.7:40001" in caplog.text, "the closing log line")
    assert "connection from 198.51.100.7:40001 (TLS)" in caplog.text
    assert "127.0.0.1:" not in caplog.text, "the balancer's address is not the client's"


def test_a_failed_handshake_behind_a_balancer_names_the_client(
    serve_in_thread: ServeInThread, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    port = greet_behind_a_balancer(serve_in_thread, certs)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(encode_v2(CLIENT) + b"hello in plain text\n")
        assert recv_all(sock) == b""
    wait_until(lambda: "TLS handshake with" in caplog.text, "the handshake's log line")
    assert "TLS handshake with 198.51.100.7:40001 failed: the client does not speak TLS" in (
        caplog.text
    )


def test_the_carried_address_is_denied_before_the_handshake(
    serve_in_thread: ServeInThread, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    port = greet_behind_a_balancer(
        serve_in_thread, certs, access=AccessSources(deny=["198.51.100.0/24"])
    )
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        client = MemoryClient(certs, sock)
        sock.sendall(encode_v2(CLIENT) + client.client_hello())
        with contextlib.suppress(ConnectionResetError):  # closed with the hello unread
            assert recv_all(sock) == b"", "not a byte of the handshake"
    assert "refused 198.51.100.7:40001: denied (--deny)" in caplog.text
