"""The files service against hostile clients (and the client against a hostile server).

Over real loopback sockets: half-sent huge frames, uploads without a
login, token guessing (with the server's clock in the test's hands), and
names full of terminal escapes.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from shares import TOKEN, Share, snapshot, write
from socketeer import Endpoint, ServerConfig
from socketeer.framing import LengthPrefixCodec
from socketeer.services.files import FilesService
from socketeer.services.files.client import FilesClient, FilesError
from socketeer.services.files.connection import frame
from socketeer.services.files.messages import Error, Hello, Message, Put, Welcome, decode
from socketeer.throttle import AuthThrottle
from support import WAIT, ThreadedServer, assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("no_errors_logged")
MIB = 1024 * 1024
CLEAR_SCREEN = "\x1b[2J"


def tcp_connect(endpoint: Endpoint) -> socket.socket:
    return socket.create_connection((endpoint.connect_host, endpoint.port), timeout=WAIT)


def replies(sock: socket.socket) -> list[Message]:
    """Every control message the server sends until it closes the connection."""
    received = b""
    deadline = time.monotonic() + WAIT
    while chunk := sock.recv(65536):
        received += chunk
        assert time.monotonic() < deadline, "the server never closed the connection"
    return [decode(body) for body in LengthPrefixCodec().feed(received)]


# --- half-sent control frames ---------------------------------------------------------


def test_half_sent_huge_frames_before_hello_are_refused_at_once(share: Share) -> None:
    # Twenty strangers each announce a frame of 16 MiB less a byte (the most a first
    # byte of 0x00 allows), send 1 KiB of it and wait.  The server answers every one
    # at once instead of waiting for (and keeping) the rest.
    with ExitStack() as stack:
        socks = [stack.enter_context(tcp_connect(share.endpoint)) for _ in range(20)]
        for sock in socks:
            sock.sendall((16 * MIB - 1).to_bytes(4, "big") + bytes(1024))
        for sock in socks:
            (error,) = replies(sock)
            assert isinstance(error, Error)
            assert error.code == "bad-request"
            assert "65536-byte limit before hello" in error.message
    with share.connect(token=None) as client:  # everyone else is still served
        assert client.list("") == []


def test_a_huge_request_after_hello_is_refused_at_its_header(share: Share) -> None:
    with tcp_connect(share.endpoint) as sock:
        sock.sendall(frame(Hello()))
        sock.sendall((16 * MIB - 1).to_bytes(4, "big") + bytes(1024))
        welcome, error = replies(sock)
    assert isinstance(welcome, Welcome)
    assert isinstance(error, Error)
    assert "1048576-byte limit" in error.message


def test_max_message_sets_the_files_request_limit(tmp_path: Path) -> None:
    threaded = ThreadedServer(
        FilesService(tmp_path), ["127.0.0.1:0"], ServerConfig(max_message_size=4096)
    )
    (endpoint,) = threaded.start()
    try:
        with tcp_connect(endpoint) as sock:
            sock.sendall(frame(Hello()))
            sock.sendall((5000).to_bytes(4, "big") + bytes(100))
            welcome, error = replies(sock)
        assert isinstance(welcome, Welcome)
        assert isinstance(error, Error)
        assert "4096-byte limit" in error.message
    finally:
        threaded.stop()


# --- no upload byte before a login ----------------------------------------------------


def test_a_put_before_hello_is_refused_before_any_file_byte(share: Share) -> None:
    before = snapshot(share.root)
    with tcp_connect(share.endpoint) as sock:
        sock.sendall(frame(Put("evil.bin", size=10)))
        (error,) = replies(sock)  # no "ready": the server takes no file byte
    assert isinstance(error, Error)
    assert (error.code, error.message) == (
        "bad-request",
        "client may not send 'put' now (before hello)",
    )
    assert snapshot(share.root) == before


def test_a_put_after_a_hello_without_the_token_is_refused_before_any_file_byte(
    share: Share,
) -> None:
    before = snapshot(share.root)
    with tcp_connect(share.endpoint) as sock:
        sock.sendall(frame(Hello(token=None)))
        sock.sendall(frame(Put("evil.bin", size=10)))
        sock.shutdown(socket.SHUT_WR)
        welcome, error = replies(sock)
    assert isinstance(welcome, Welcome)
    assert not welcome.writable
    assert isinstance(error, Error)
    assert error.code == "unauthorized"
    assert snapshot(share.root) == before


# --- token guessing -------------------------------------------------------------------


class FakeClock:
    """The server's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[Endpoint, FakeClock]]:
    """A writable share that bans an address after 3 wrong tokens in a minute, for 60 s."""
    clock = FakeClock()
    throttle = AuthThrottle(max_failures=3, window=60.0, ban=60.0, first_delay=0.2, max_delay=0.2)
    root = tmp_path / "share"
    root.mkdir()
    service = FilesService(root, allow_upload=True, token=TOKEN, throttle=throttle, clock=clock)
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (endpoint,) = threaded.start()
    yield endpoint, clock
    threaded.stop()


def connect(endpoint: Endpoint, token: str) -> FilesClient:
    return FilesClient.connect(endpoint, token=token, timeout=WAIT)


def refused(endpoint: Endpoint, token: str) -> FilesError:
    with pytest.raises(FilesError) as info:
        connect(endpoint, token).close()
    return info.value


def test_repeated_wrong_tokens_ban_the_address_until_the_ban_expires(
    guarded: tuple[Endpoint, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    endpoint, clock = guarded
    for _ in range(3):
        assert refused(endpoint, "guess").code == "unauthorized"
    banned = refused(endpoint, TOKEN)  # even the right token
    assert banned.code == "banned"
    assert "too many failed logins from 127.0.0.1; try again in 60 s" in str(banned)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("banned for 60 s after 3 failed logins" in w for w in warnings), warnings
    assert any("refused: too many failed logins" in w for w in warnings), warnings

    clock.advance(30)
    assert "try again in 30 s" in str(refused(endpoint, TOKEN))
    clock.advance(30)
    with connect(endpoint, TOKEN) as client:  # the ban has lifted
        assert client.writable


def test_a_wrong_token_is_answered_only_after_the_delay(
    guarded: tuple[Endpoint, FakeClock],
) -> None:
    endpoint, _ = guarded
    started = time.monotonic()
    assert refused(endpoint, "guess").code == "unauthorized"
    assert time.monotonic() - started >= 0.15  # 0.2 s, less the loop's clock resolution


def test_a_success_forgets_earlier_wrong_tokens(guarded: tuple[Endpoint, FakeClock]) -> None:
    endpoint, _ = guarded
    for _ in range(2):
        refused(endpoint, "guess")
    connect(endpoint, TOKEN).close()
    for _ in range(2):
        assert refused(endpoint, "guess").code == "unauthorized"
    connect(endpoint, TOKEN).close()  # four wrong in all, never three in a row


# --- escapes --------------------------------------------------------------------------


def test_a_plain_download_of_a_name_with_escapes_gets_an_escaped_error_line(
    share: Share,
) -> None:
    with tcp_connect(share.endpoint) as sock:
        sock.sendall(f"{CLEAR_SCREEN}nosuch\u202e.txt\n".encode())
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply == b"error: \\x1b[2Jnosuch\\u202e.txt: no such file or directory\n"


def test_an_error_frame_about_a_name_with_escapes_is_escaped(share: Share) -> None:
    with share.connect(token=None) as client, pytest.raises(FilesError) as info:
        client.stat(f"{CLEAR_SCREEN}missing")
    assert str(info.value) == "\\x1b[2Jmissing: no such file or directory"


def test_get_of_a_name_with_escapes_prints_an_escaped_one_line_error(share: Share) -> None:
    result = run_cli("get", str(share.endpoint), f"{CLEAR_SCREEN}nosuch", "out")
    assert_one_line_error(result, 1, "\\x1b[2Jnosuch: no such file or directory")
    assert b"\x1b" not in result.stderr


@pytest.fixture
def hostile_server() -> Iterator[Endpoint]:
    """A "files server" that answers every hello with an error full of terminal escapes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(WAIT)
            conn.recv(65536)
            conn.sendall(frame(Error("unauthorized", f"{CLEAR_SCREEN}\x07gotcha\r\nline two")))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield Endpoint("tcp", "127.0.0.1", listener.getsockname()[1])
    listener.close()
    thread.join(WAIT)


def test_the_cli_escapes_what_a_hostile_server_says(hostile_server: Endpoint) -> None:
    result = run_cli("ls", f"127.0.0.1:{hostile_server.port}")
    assert_one_line_error(result, 1, "\\x1b[2J\\x07gotcha\\x0d\\x0aline two")
    assert b"\x1b" not in result.stderr
    assert b"\x07" not in result.stderr


def test_the_server_logs_escaped_names(
    share: Share, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(share.root / "ok.txt", b"ok\n")
    caplog.set_level(logging.INFO, logger="socketeer.server")
    with tcp_connect(share.endpoint) as sock:
        sock.sendall(f"{CLEAR_SCREEN}nosuch\n".encode())
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
    logged = [r.getMessage() for r in caplog.records if "nosuch" in r.getMessage()]
    assert logged
    assert all("\x1b" not in line and "\\x1b[2J" in line for line in logged), logged
