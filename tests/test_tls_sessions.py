"""Sessions over TLS: a client leaving costs no warning; the files web knows it is https."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from shares import TOKEN
from socketeer.services.files import FilesService
from socketeer.tasks import MessageStream, task_service
from support import WAIT, ServeInThread, ThreadedServer, wait_until
from tls_support import Certificates, make_certificates


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


def tls_connection(certs: Certificates, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(certs.ca))
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def receive_until(conn: ssl.SSLSocket, text: bytes) -> bytes:
    got = b""
    while text not in got:
        chunk = conn.recv(4096)
        assert chunk, f"closed after {got!r}"
        got += chunk
    return got


async def echo(stream: MessageStream) -> None:
    async for message in stream:
        await stream.send(message)


def serve_tls(serve_in_thread: ServeInThread, certs: Certificates, service: str) -> ThreadedServer:
    chosen = task_service(echo, name="echo") if service == "task" else service
    server, _ = serve_in_thread(chosen, ["tls://127.0.0.1:0"], tls=certs.server())
    return server


# What each kind of client says before it leaves, and what it hears back.
CONVERSATIONS = {
    "chat": (b"ann\nhello all\n", b"hello all"),
    "chat-http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"</html>"),
    "task": (b"ping\n", b"ping\n"),
    "greet": (b"bo\n", b"hello, bo!"),
}


@pytest.mark.parametrize("leaving", ["close_notify", "fin"])
@pytest.mark.parametrize("kind", list(CONVERSATIONS))
def test_a_tls_client_leaving_logs_no_warning(
    serve_in_thread: ServeInThread,
    certs: Certificates,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    leaving: str,
) -> None:
    caplog.set_level(logging.WARNING)
    threaded = serve_tls(serve_in_thread, certs, kind.removesuffix("-http"))
    port = threaded.server.endpoints[0].port
    assert port is not None
    said, heard = CONVERSATIONS[kind]
    conn = tls_connection(certs, port)
    try:
        conn.sendall(said)
        receive_until(conn, heard)
        if leaving == "close_notify":
            conn.unwrap().close()
        else:
            conn.shutdown(socket.SHUT_WR)
    finally:
        conn.close()
    wait_until(lambda: threaded.server.session_count == 0, "the session to end")
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []


def test_the_files_web_login_over_tls_takes_an_https_origin_and_sets_a_secure_cookie(
    serve_in_thread: ServeInThread, certs: Certificates, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    service = FilesService(share, allow_upload=True, token=TOKEN)
    _, (bound,) = serve_in_thread(service, ["tls://127.0.0.1:0"], tls=certs.server())
    where = f"127.0.0.1:{bound.port}"
    login = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "--max-time",
            str(WAIT),
            "--cacert",
            str(certs.ca),
            "-H",
            f"Origin: https://{where}",
            "-d",
            f"token={TOKEN}",
            f"https://{where}/.socketeer/login",
        ],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    head = login.stdout.decode(errors="replace")
    assert head.startswith("HTTP/1.1 303"), head + login.stderr.decode()
    (cookie,) = [line for line in head.splitlines() if line.lower().startswith("set-cookie:")]
    assert cookie.rstrip().endswith("; Secure")
