"""connect and listen as ``nc -N``: every byte of stdin is delivered, or the command says so."""

from __future__ import annotations

import concurrent.futures
import os
import pty
import socket
import subprocess
from pathlib import Path

import pytest

from netcat_peers import (
    ListenProcess,
    Peer,
    Received,
    half_close_then_read,
    reset_after,
    say_then_close,
)
from support import WAIT, assert_one_line_error, socketeer_command

BIG = 50 * 1024 * 1024
BIG_WAIT = 60.0  # seconds for 50 MB through two processes on a busy machine


@pytest.fixture(scope="module")
def big_stdin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Received]:
    """A 50 MB file to use as stdin, and what a peer must receive of it."""
    data = os.urandom(BIG)
    path = tmp_path_factory.mktemp("stdin") / "big"
    path.write_bytes(data)
    return path, Received.of(data)


def run_connect(
    *args: str, stdin: Path | None = None, timeout: float = WAIT
) -> subprocess.CompletedProcess[bytes]:
    with (stdin or Path(os.devnull)).open("rb") as source:
        return subprocess.run(
            socketeer_command("connect", *args),
            stdin=source,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


# --- connect ----------------------------------------------------------------------------


def test_connect_sends_all_of_stdin_to_a_peer_that_half_closes_at_once(
    big_stdin: tuple[Path, Received],
) -> None:
    path, sent = big_stdin
    peer = Peer(half_close_then_read)
    result = run_connect(peer.endpoint, stdin=path, timeout=BIG_WAIT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert peer.outcome(BIG_WAIT) == sent


def test_connect_prints_what_a_peer_says_before_it_closes() -> None:
    peer = Peer(say_then_close(b"bye\n"))
    result = run_connect(peer.endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"bye\n"


def test_connect_fails_when_a_half_closed_peer_resets_mid_stream(
    big_stdin: tuple[Path, Received],
) -> None:
    path, _ = big_stdin
    peer = Peer(reset_after(1024 * 1024, half_close=True))
    result = run_connect(peer.endpoint, stdin=path, timeout=BIG_WAIT)
    assert peer.outcome() == 1024 * 1024
    assert_one_line_error(result, 1, "before all of stdin was sent")


def test_connect_fails_when_the_peer_resets_mid_stream(
    big_stdin: tuple[Path, Received],
) -> None:
    path, _ = big_stdin
    peer = Peer(reset_after(1024 * 1024, half_close=False))
    result = run_connect(peer.endpoint, stdin=path, timeout=BIG_WAIT)
    assert peer.outcome() == 1024 * 1024
    assert_one_line_error(result, 1, "connection reset by peer")


def test_connect_from_a_terminal_ends_when_the_peer_closes() -> None:
    """Typing to a closed peer is pointless: like telnet, the command ends with the peer."""
    peer = Peer(say_then_close(b"bye\n"))
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            socketeer_command("connect", peer.endpoint),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=WAIT)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 0, err
    assert out == b"bye\n"


# --- listen -----------------------------------------------------------------------------


def connect_and_half_close(endpoint: str) -> Received:
    """A client that sends nothing, half-closes at once and reads to the end."""
    with socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), WAIT) as conn:
        conn.settimeout(BIG_WAIT)
        return half_close_then_read(conn)


def test_listen_sends_all_of_stdin_to_a_client_that_half_closes_at_once(
    big_stdin: tuple[Path, Received],
) -> None:
    path, sent = big_stdin
    with path.open("rb") as source:
        listener = ListenProcess("127.0.0.1:0", stdin=source)
    assert connect_and_half_close(str(listener.endpoint)) == sent
    assert listener.finish(BIG_WAIT) == (b"", 0)


def test_listen_fails_when_the_client_resets_mid_stream(
    big_stdin: tuple[Path, Received],
) -> None:
    path, _ = big_stdin
    with path.open("rb") as source:
        listener = ListenProcess("127.0.0.1:0", stdin=source)
    with socket.create_connection(("127.0.0.1", listener.endpoint.port), WAIT) as conn:
        conn.settimeout(WAIT)
        assert reset_after(1024 * 1024, half_close=True)(conn) == 1024 * 1024
    _, code = listener.finish(BIG_WAIT)
    err = listener.err
    assert code == 1, err
    assert err.startswith("socketeer: error: cannot send to 127.0.0.1:"), err
    assert err.count("\n") == 1, err
    assert "before all of stdin was sent" in err


def test_listen_keep_open_closes_each_client_after_it_has_sent() -> None:
    listener = ListenProcess("-k", "127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", listener.endpoint.port), WAIT) as conn:
        conn.settimeout(WAIT)
        conn.sendall(b"one shot")
        assert half_close_then_read(conn) == Received.of(b"")
    listener.proc.terminate()
    assert listener.finish() == (b"one shot", 0)


def test_connect_and_listen_move_50_mb_both_ways(big_stdin: tuple[Path, Received]) -> None:
    """Both ends half-close when their stdin ends; both see everything, both exit 0."""
    path, sent = big_stdin
    with path.open("rb") as source:
        listener = ListenProcess("127.0.0.1:0", stdin=source)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        listened = pool.submit(listener.finish, BIG_WAIT)
        result = run_connect(str(listener.endpoint), stdin=path, timeout=BIG_WAIT)
        got_by_listen, code = listened.result(BIG_WAIT)
    assert (result.returncode, code) == (0, 0), result.stderr
    assert Received.of(result.stdout) == sent
    assert Received.of(got_by_listen) == sent
