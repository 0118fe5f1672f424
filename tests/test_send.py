"""``socketeer send`` against socketeer's own servers and the classic seed programs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketeer import Connection
from support import WAIT, ServeProcess, assert_one_line_error, read_line, run_cli

SEEDS = Path(__file__).parent / "seeds"


@pytest.fixture
def seed_greet_server() -> Iterator[int]:
    """Seed 001's thread-per-client greet server (it never ends by itself); its port."""
    proc = subprocess.Popen(
        [sys.executable, str(SEEDS / "greet_server.py")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        yield int(read_line(proc.stdout, time.monotonic() + WAIT))
    finally:
        proc.kill()
        proc.wait(WAIT)
        assert proc.stdout is not None
        proc.stdout.close()


def seed_server(name: str) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, str(SEEDS / name)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    return proc, int(read_line(proc.stdout, time.monotonic() + WAIT))


# --- UDP: a datagram is the message ---------------------------------------------------


def test_send_over_udp_talks_to_socketeers_own_greet(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "udp://127.0.0.1:0")
    began = time.monotonic()
    result = run_cli("send", str(server.endpoints[0]), "rose", "think")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "hello, rose!\nhello, think!\n"
    assert time.monotonic() - began < 5


def test_send_over_udp_talks_to_the_seed_003_udp_server() -> None:
    proc, port = seed_server("udp_server.py")
    result = run_cli("send", f"udp://127.0.0.1:{port}", "hello")
    out, _ = proc.communicate(timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\n"
    assert out.decode().splitlines()[-1] == "b'hello'"  # one datagram, no newline added


def test_send_over_udp_says_in_one_line_when_no_reply_comes(
    serve_process: ServeProcess,
) -> None:
    """greet answers a 2-byte name only once the sender has paid for the reply (3x rule)."""
    server = serve_process("serve", "greet", "udp://127.0.0.1:0")
    endpoint = str(server.endpoints[0])
    result = run_cli("send", "--timeout", "1", endpoint, "ro")
    assert_one_line_error(result, 1, f'no reply from {endpoint} to "ro" within 1 second')


# --- the classic servers: replies as they arrive, framing from what the server sent -----


def test_send_talks_to_the_seed_001_threaded_greet_server(seed_greet_server: int) -> None:
    """It never sends a newline and compares what it receives with b'exit'."""
    result = run_cli("send", f"127.0.0.1:{seed_greet_server}", "rose", "think", "exit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "welcome!\nhello, rose!\nhello, think!\n"


def test_send_line_framing_to_a_server_without_newlines_says_what_to_use(
    seed_greet_server: int,
) -> None:
    result = run_cli(
        "send", "--framing", "line", "--timeout", "1", f"127.0.0.1:{seed_greet_server}", "rose"
    )
    assert_one_line_error(result, 1, "no line ending from 127.0.0.1:")
    assert "use --framing auto or raw" in result.stderr.decode()


def test_send_picks_length_prefixes_from_the_greeting(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0", "--framing", "length")
    result = run_cli("send", str(server.endpoints[0]), "rose", "exit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "welcome!\nhello, rose!\n"


def test_send_prints_a_reply_that_has_no_newline(serve_process: ServeProcess) -> None:
    """The seed 000/003 TCP server answers b'hi' and closes: no newline, still a reply."""
    proc, port = seed_server("tcp_server.py")
    result = run_cli("send", f"127.0.0.1:{port}", "hello!")
    out, _ = proc.communicate(timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\n"
    assert out.decode().splitlines()[-1] == r"b'hello!\n'"  # sent as a line, like nc


# --- error replies ----------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["auto", "line"])
def test_an_error_reply_from_a_length_server_is_exit_1_with_a_hint(
    serve_process: ServeProcess, framing: str
) -> None:
    server = serve_process("serve", "echo", "127.0.0.1:0", "--framing", "length")
    result = run_cli("send", "--framing", framing, str(server.endpoints[0]), "someone")
    assert_one_line_error(result, 1, "answered with an error: frame of ")
    assert "use --framing length" in result.stderr.decode()
    assert result.stdout == b""


def test_an_error_greeting_is_exit_1(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0", "--max-conns", "1")
    with Connection.connect(server.endpoints[0], timeout=WAIT) as held:
        assert held.recvline() == b"welcome!"
        result = run_cli("send", str(server.endpoints[0]), "rose")
    assert_one_line_error(result, 1, "answered with an error: server busy")
    assert "--framing" not in result.stderr.decode()


def test_an_echoed_error_line_is_not_an_error(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "echo", "127.0.0.1:0")
    result = run_cli("send", str(server.endpoints[0]), "error: not really")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"error: not really\n"
