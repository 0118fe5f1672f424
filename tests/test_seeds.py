"""The tutorial programs against socketeer's servers, and socketeer's clients against theirs.

Every seed client is run, unmodified but for its port, against the
``socketeer serve`` that plays its server's part, over TCP and UDP; socketeer's
clients that cannot speak a seed server's protocol say so in one line.  The
pairs covered elsewhere are listed in docs/design.md ("The tutorial programs").
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import SEEDS, WAIT, ServeProcess, assert_one_line_error, read_line, run_cli, run_seed


@pytest.mark.parametrize(
    ("service", "endpoint", "seed", "expected"),
    [
        # seed 000's TCP client sends once and prints the answer: the echo.
        ("echo", "127.0.0.1:0", "tcp_client.py", "我用python\n"),
        # seed 003's UDP client: one datagram, one answer, printed with its sender.
        ("echo", "udp://127.0.0.1:0", "udp_client.py", "hello ('127.0.0.1', PORT)\n"),
        ("greet", "udp://127.0.0.1:0", "udp_client.py", "hello, hello! ('127.0.0.1', PORT)\n"),
    ],
)
def test_a_seed_client_against_socketeer(
    serve_process: ServeProcess, service: str, endpoint: str, seed: str, expected: str
) -> None:
    server = serve_process("serve", service, endpoint)
    port = server.endpoints[0].port
    assert run_seed(seed, str(port)) == expected.replace("PORT", str(port))


def test_the_gbk_client_against_serve_echo(serve_process: ServeProcess) -> None:
    # (greet answers it too, but its greeting and answer race for the client's one recv())
    server = serve_process("serve", "echo", "127.0.0.1:0")
    port = server.endpoints[0].port
    out = run_seed("gbk_client.py", input=f"127.0.0.1\n{port}\n你好, 世界\n".encode())
    assert out == "server_ip:server_port:发送的数据:你好, 世界\n"


def test_the_file_downloader_against_serve_files(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "notes.txt").write_bytes("文件下载器\n".encode() * 1000)
    server = serve_process("serve", "files", str(share), "127.0.0.1:0")
    got = tmp_path / "got.txt"
    run_seed("file_download_client.py", str(server.endpoints[0].port), "notes.txt", str(got))
    assert got.read_bytes() == (share / "notes.txt").read_bytes()


def seed_server(name: str) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, str(SEEDS / name)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    return proc, int(read_line(proc.stdout, time.monotonic() + WAIT))


def test_connect_against_the_seed_tcp_server() -> None:
    proc, port = seed_server("tcp_server.py")
    try:
        result = run_cli("connect", f"127.0.0.1:{port}", input="我用python".encode())
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"hi"
    finally:
        out, _ = proc.communicate(timeout=WAIT)
    assert out.decode() == repr("我用python".encode()) + "\n"


def test_get_against_the_seed_tcp_server_says_it_is_not_a_files_server() -> None:
    proc, port = seed_server("tcp_server.py")
    try:
        result = run_cli("get", f"127.0.0.1:{port}", "notes.txt", "-")
        assert_one_line_error(result, 1, "is not a files server")
    finally:
        proc.communicate(timeout=WAIT)
