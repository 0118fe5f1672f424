"""The command line as users run it: real processes, real sockets, nc and the seed programs."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netcat_peers import ListenProcess, Peer, Received, read_to_end
from socketeer import Connection
from support import (
    SEEDS,
    WAIT,
    ServeProcess,
    assert_one_line_error,
    read_line,
    run_cli,
    run_seed,
    socketeer_command,
)

needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")


# --- serve -----------------------------------------------------------------------------


def test_serve_prints_the_real_port_and_talks_to_send(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0")
    (endpoint,) = server.endpoints
    assert endpoint.port != 0
    result = run_cli("send", str(endpoint), "rose", "think", "exit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "welcome!\nhello, rose!\nhello, think!\n"
    assert server.stop() == 0
    log = server.stderr()
    assert "connection from 127.0.0.1:" in log
    assert "closed 127.0.0.1:" in log


def test_seed_greet_client_works_unmodified(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0")
    out = run_seed("greet_client.py", str(server.endpoints[0].port))
    assert out == "welcome!\n\nhello, rose!\nhello, think!\nhello, babala!\n"


@needs_nc
def test_nc_typing_lines(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0")
    result = subprocess.run(
        ["nc", "-N", "127.0.0.1", str(server.endpoints[0].port)],
        input=b"alice\nbob\nexit\n",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.stdout == b"welcome!\nhello, alice!\nhello, bob!\n"


def test_send_raw_and_length_framing(serve_process: ServeProcess) -> None:
    raw = serve_process("serve", "greet", "127.0.0.1:0")
    result = run_cli("send", "--framing", "raw", str(raw.endpoints[0]), "rose")
    assert result.stdout.decode() == "welcome!\nhello, rose!\n"
    framed = serve_process("serve", "greet", "127.0.0.1:0", "--framing", "length")
    result = run_cli("send", "--framing", "length", str(framed.endpoints[0]), "multi\nline")
    assert result.stdout.decode() == "welcome!\nhello, multi\nline!\n"


def test_send_gbk(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0", "--encoding", "gbk")
    result = run_cli("send", "--encoding", "gbk", str(server.endpoints[0]), "你好")
    assert result.stdout.decode() == "welcome!\nhello, 你好!\n"


def test_serve_unix_and_udp_and_ipv6_at_once(serve_process: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    args = ["serve", "echo", f"unix://{path}", "udp://127.0.0.1:0"]
    if socket.has_ipv6:
        args.append("[::1]:0")
    server = serve_process(*args, count=len(args) - 2)
    unix_ep, udp_ep, *rest = server.endpoints
    assert str(unix_ep) == f"unix://{path}"
    assert udp_ep.transport == "udp"
    assert udp_ep.port != 0
    result = run_cli("send", "--framing", "raw", "--greeting-wait", "0", str(unix_ep), "hi")
    assert result.stdout == b"hi\n"
    assert run_seed("udp_client.py", str(udp_ep.port)).startswith("hello ")
    for endpoint in rest:
        with Connection.connect(endpoint, timeout=WAIT) as conn:
            conn.send(b"six")
            assert conn.recvexactly(3) == b"six"
    assert server.stop() == 0
    assert not path.exists(), "the Unix socket file must be removed on exit"


def test_stale_unix_socket_is_replaced(serve_process: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    server = serve_process("serve", "echo", f"unix://{path}")
    with Connection.connect(server.endpoints[0], timeout=WAIT) as conn:
        conn.send(b"x")
        assert conn.recv() == b"x"


def test_unix_socket_of_a_live_server_is_not_stolen(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "live.sock"
    serve_process("serve", "echo", f"unix://{path}")
    result = run_cli("serve", "echo", f"unix://{path}")
    assert_one_line_error(result, 1, "address already in use")
    assert path.exists()


def test_regular_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    result = run_cli("serve", "echo", f"unix://{path}")
    assert_one_line_error(result, 1, "exists and is not a socket")
    assert path.read_text() == "keep me"


def test_nonexistent_unix_directory(tmp_path: Path) -> None:
    result = run_cli("serve", "echo", f"unix://{tmp_path}/missing/dir/s.sock")
    assert_one_line_error(result, 1, "does not exist")


def test_endpoint_in_use_is_exit_1(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0")
    result = run_cli("serve", "greet", str(server.endpoints[0]))
    assert_one_line_error(
        result, 1, f"cannot listen on {server.endpoints[0]}: address already in use"
    )
    still = run_cli("send", str(server.endpoints[0]), "still")
    assert still.stdout.endswith(b"hello, still!\n")


@pytest.mark.parametrize(
    ("endpoint", "text"),
    [
        ("localhost", "expected HOST:PORT"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:70000", "out of range"),
        ("ftp://x:1", "unknown scheme"),
        ("::1:80", "brackets"),
    ],
)
def test_malformed_endpoint_is_exit_2(endpoint: str, text: str) -> None:
    assert_one_line_error(run_cli("serve", "greet", endpoint), 2, text)
    assert_one_line_error(run_cli("send", endpoint, "x"), 2, text)


def test_usage_errors_are_one_line_exit_2() -> None:
    assert_one_line_error(run_cli("serve", "nosuch"), 2, "nosuch")
    assert_one_line_error(run_cli("serve", "greet", "--workers", "0"), 2, "--workers")
    assert_one_line_error(run_cli("serve", "greet", "--encoding", "nope"), 2, "unknown encoding")
    utf16 = run_cli("send", "--encoding", "utf-16", "127.0.0.1:1", "x")
    assert_one_line_error(utf16, 2, "does not write ASCII as ASCII")
    assert_one_line_error(run_cli("frobnicate"), 2, "frobnicate")


def test_connection_refused_names_the_endpoint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connecting is refused
        result = run_cli("send", f"127.0.0.1:{port}", "x")
    assert_one_line_error(result, 1, f"cannot connect to 127.0.0.1:{port}: connection refused")


def test_sigint_stops_gracefully_with_exit_0(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0", "--grace", "0.2")
    with Connection.connect(server.endpoints[0], timeout=WAIT) as conn:
        conn.recvline()
        assert server.stop(signal.SIGINT) == 0
        assert conn.recvline() == b"error: server is shutting down"


def test_restart_on_the_same_port_right_after_stop(serve_process: ServeProcess) -> None:
    """SO_REUSEADDR: connections left in TIME_WAIT do not block a restart."""
    first = serve_process("serve", "greet", "127.0.0.1:0")
    endpoint = first.endpoints[0]
    for _ in range(5):
        assert run_cli("send", str(endpoint), "x").returncode == 0
    assert first.stop() == 0
    second = serve_process("serve", "greet", str(endpoint))
    assert second.endpoints == [endpoint]
    assert run_cli("send", str(endpoint), "again").stdout.endswith(b"hello, again!\n")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_workers_share_the_port(serve_process: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    server = serve_process(
        "serve", "greet", "127.0.0.1:0", f"unix://{path}", "--workers", "2", count=2
    )
    assert len(children_of(server.proc.pid)) == 2
    for endpoint in server.endpoints:
        for n in range(20):
            with Connection.connect(endpoint, timeout=WAIT) as conn:
                assert conn.recvline() == b"welcome!"
                conn.sendline(f"w{n}")
                assert conn.recvline() == f"hello, w{n}!".encode()
    assert server.stop() == 0
    assert not path.exists()
    assert children_of(server.proc.pid) == []


def test_worker_logs_say_which_worker_took_each_connection(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "greet", "127.0.0.1:0", "--workers", "2")
    ports = set()
    for _ in range(10):
        with Connection.connect(server.endpoints[0], timeout=WAIT) as conn:
            assert conn.recvline() == b"welcome!"
            ports.add(conn.sock.getsockname()[1])
    assert server.stop() == 0
    logged = re.findall(
        r" INFO \[worker ([12])\] connection from 127\.0\.0\.1:(\d+)", server.stderr()
    )
    assert {int(port) for _, port in logged} == ports
    assert {worker for worker, _ in logged} <= {"1", "2"}


def test_workers_report_a_bind_failure(serve_process: ServeProcess) -> None:
    taken = serve_process("serve", "greet", "127.0.0.1:0")
    result = run_cli("serve", "greet", str(taken.endpoints[0]), "--workers", "2")
    assert_one_line_error(result, 1, "address already in use")


def test_no_arguments_shows_the_help() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "Commands:" in result.stderr.decode()
    for command in ("serve", "connect", "listen", "send"):
        helped = run_cli(command, "--help")
        assert helped.returncode == 0
        assert helped.stdout.decode().startswith(f"Usage: socketeer {command} ")


def test_python_dash_m_and_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("socketeer, version ")


# --- connect / listen ----------------------------------------------------------------


def test_connect_copies_stdin_to_socket_and_back(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "echo", "127.0.0.1:0")
    data = os.urandom(300_000)
    result = run_cli("connect", str(server.endpoints[0]), input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_connect_unix(serve_process: ServeProcess, tmp_path: Path) -> None:
    server = serve_process("serve", "greet", f"unix://{tmp_path}/g.sock")
    result = run_cli("connect", str(server.endpoints[0]), input=b"unix\nexit\n")
    assert result.stdout == b"welcome!\nhello, unix!\n"


def test_connect_udp(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "echo", "udp://127.0.0.1:0")
    result = run_cli("connect", "--wait", "0.5", str(server.endpoints[0]), input=b"datagram")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"datagram"


def test_connect_refused_is_exit_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = run_cli("connect", f"127.0.0.1:{port}", input=b"")
    assert_one_line_error(result, 1, "connection refused")


def test_listen_is_the_seed_single_exchange_server() -> None:
    listener = ListenProcess("127.0.0.1:0")
    assert listener.proc.stdin is not None
    listener.proc.stdin.write("人生苦短".encode())
    listener.proc.stdin.flush()
    assert run_seed("tcp_client.py", str(listener.endpoint.port)) == "人生苦短\n"
    out, code = listener.finish()
    assert out.decode() == "我用python"
    assert code == 0


def test_listen_speaks_gbk_with_the_seed_004_client() -> None:
    listener = ListenProcess("127.0.0.1:0")
    assert listener.proc.stdin is not None
    listener.proc.stdin.write("收到".encode("gbk"))
    listener.proc.stdin.flush()
    out = run_seed("gbk_client.py", input=f"127.0.0.1\n{listener.endpoint.port}\n你好\n".encode())
    assert out.endswith("收到\n")
    received, code = listener.finish()
    assert received.decode("gbk") == "你好"
    assert code == 0


def test_listen_keep_open_serves_several_clients() -> None:
    listener = ListenProcess("-k", "127.0.0.1:0")
    for n in range(3):
        with Connection.connect(listener.endpoint, timeout=WAIT) as conn:
            conn.sendline(f"client {n}")
            conn.shutdown_write()
    time.sleep(0.2)
    listener.proc.send_signal(signal.SIGTERM)
    out, code = listener.finish()
    assert sorted(out.decode().splitlines()) == ["client 0", "client 1", "client 2"]
    assert code == 0


class SeedServer:
    """A seed server program that prints its port, then what it received."""

    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SEEDS / name)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.port = int(read_line(self.proc.stdout, time.monotonic() + WAIT))

    def finish(self, stdin: bytes = b"") -> str:
        out, _ = self.proc.communicate(stdin, timeout=WAIT)
        return out.decode()


def test_connect_udp_against_the_seed_udp_server() -> None:
    seed = SeedServer("udp_server.py")
    result = run_cli("connect", f"udp://127.0.0.1:{seed.port}", input=b"hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi"
    assert seed.finish() == "b'hello'\n"


def test_send_gbk_against_the_seed_004_server() -> None:
    seed = SeedServer("gbk_server.py")
    assert seed.proc.stdin is not None
    seed.proc.stdin.write("收到\n".encode())
    seed.proc.stdin.flush()
    endpoint = f"127.0.0.1:{seed.port}"
    args = ["--framing", "raw", "--encoding", "gbk", "--greeting-wait", "0"]
    result = run_cli("send", *args, endpoint, "你好")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "收到\n"
    assert seed.finish().startswith("你好\n")


def test_send_against_the_seed_tcp_server() -> None:
    seed = SeedServer("tcp_server.py")
    endpoint = f"127.0.0.1:{seed.port}"
    result = run_cli("send", "--framing", "raw", "--greeting-wait", "0", endpoint, "hello!")
    assert result.stdout == b"hi\n"
    assert seed.finish() == "b'hello!'\n"


# --- --encoding --------------------------------------------------------------------------


def test_listen_encoding_gbk_talks_to_the_seed_004_client_in_the_terminal_encoding() -> None:
    listener = ListenProcess("--encoding", "gbk", "127.0.0.1:0")
    assert listener.proc.stdin is not None
    listener.proc.stdin.write("收到".encode())
    listener.proc.stdin.flush()
    out = run_seed("gbk_client.py", input=f"127.0.0.1\n{listener.endpoint.port}\n你好\n".encode())
    assert out.endswith("收到\n")
    received, code = listener.finish()
    assert (received.decode(), code) == ("你好", 0)


def test_connect_encoding_gbk_talks_to_the_seed_004_server() -> None:
    seed = SeedServer("gbk_server.py")
    assert seed.proc.stdin is not None
    seed.proc.stdin.write("收到\n".encode())
    seed.proc.stdin.flush()
    endpoint = f"127.0.0.1:{seed.port}"
    result = run_cli("connect", "--encoding", "gbk", endpoint, input="你好".encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "收到"
    assert seed.finish().startswith("你好\n")


def peer_saying(data: bytes) -> Peer[Received]:
    def behave(conn: socket.socket) -> Received:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return read_to_end(conn)

    return Peer(behave)


def test_connect_encoding_writes_in_the_terminal_encoding() -> None:
    peer = peer_saying("é".encode("gbk"))
    result = subprocess.run(
        socketeer_command("connect", "--encoding", "gbk", peer.endpoint),
        input="é".encode("latin-1"),
        capture_output=True,
        timeout=WAIT,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "latin-1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"\xe9"
    assert peer.outcome() == Received.of("é".encode("gbk"))


def test_connect_encoding_passes_undecodable_bytes_through() -> None:
    peer = peer_saying(b"\xff\x80 ok \xc4")
    result = run_cli("connect", "--encoding", "gbk", peer.endpoint, input=b"\xff")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"\xff\x80 ok \xc4"
    assert peer.outcome() == Received.of(b"\xff")


@pytest.mark.parametrize("command", ["connect", "listen", "send"])
def test_an_unknown_encoding_is_a_usage_error(command: str) -> None:
    args = ["127.0.0.1:9", "hello"] if command == "send" else ["127.0.0.1:9"]
    result = run_cli(command, "--encoding", "nope", *args)
    assert_one_line_error(result, 2, "unknown encoding 'nope'")


def test_send_replaces_characters_the_encoding_lacks() -> None:
    seed = SeedServer("tcp_server.py")
    args = ["--framing", "raw", "--encoding", "latin-1", "--greeting-wait", "0"]
    result = run_cli("send", *args, f"127.0.0.1:{seed.port}", "é你")
    assert result.returncode == 0, result.stderr
    assert seed.finish() == "b'\\xe9?'\n"


def test_listen_udp_answers_the_seed_udp_client() -> None:
    listener = ListenProcess("udp://127.0.0.1:0")
    client = subprocess.Popen(
        [sys.executable, str(SEEDS / "udp_client.py"), str(listener.endpoint.port)],
        stdout=subprocess.PIPE,
    )
    assert listener.proc.stdout is not None
    assert listener.proc.stdin is not None
    ready, _, _ = select.select([listener.proc.stdout], [], [], WAIT)
    assert ready, "the datagram never reached listen's stdout"
    assert os.read(listener.proc.stdout.fileno(), 100) == b"hello"
    listener.proc.stdin.write(b"hi")
    listener.proc.stdin.flush()
    out, _ = client.communicate(timeout=WAIT)
    assert out.decode().startswith("hi ('127.0.0.1', ")
    listener.proc.send_signal(signal.SIGTERM)
    assert listener.finish()[1] == 0


def test_listen_unix(tmp_path: Path) -> None:
    path = tmp_path / "l.sock"
    listener = ListenProcess(f"unix://{path}")
    with Connection.connect(listener.endpoint, timeout=WAIT) as conn:
        conn.send(b"over unix")
        conn.shutdown_write()
    out, code = listener.finish()
    assert (out, code) == (b"over unix", 0)
    assert not path.exists()


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
def test_socat_talks_to_greet_over_unix_and_echo_over_udp(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "greet.sock"
    serve_process("serve", "greet", f"unix://{path}")
    result = subprocess.run(
        ["socat", "-t", "5", "-", f"UNIX-CONNECT:{path}"],
        input=b"socat\nexit\n",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.stdout == b"welcome!\nhello, socat!\n"
    udp = serve_process("serve", "echo", "udp://127.0.0.1:0")
    result = subprocess.run(
        ["socat", "-t", "1", "-", f"UDP:127.0.0.1:{udp.endpoints[0].port}"],
        input=b"a datagram",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.stdout == b"a datagram"
