"""``socketeer serve tftp`` against real clients: tftp-hpa's tftp, atftp and curl, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketeer.services.tftp.packets import Ack, Data, Request, parse
from support import ServerProcess, assert_one_line_error, run_cli, socketeer_command

WAIT = 60.0  # seconds any one client may take


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def serve(tmp_path: Path, *args: str) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "small.bin").write_bytes(os.urandom(70_000))
    (root / "text.txt").write_bytes(b"one\ntwo\r\nthree\rfour\n" * 100)
    server = ServerProcess(
        ["serve", "tftp", str(root), "udp://127.0.0.1:0", *args], tmp_path / "stderr"
    )
    try:
        (endpoint,) = server.wait_listening()
        assert endpoint.port is not None
        yield root, endpoint.port
    finally:
        assert server.stop() == 0


@pytest.fixture
def share(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    yield from serve(tmp_path, "--allow-upload")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    yield from serve(tmp_path)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=WAIT, check=False)


def hpa(port: int, cwd: Path, *commands: str) -> str:
    result = run([tool("tftp"), "127.0.0.1", str(port), "-c", *commands], cwd)
    return result.stdout + result.stderr


@pytest.fixture
def here(tmp_path: Path) -> Path:
    path = tmp_path / "client"
    path.mkdir()
    return path


def test_tftp_hpa_gets_binary_and_ascii(share: tuple[Path, int], here: Path) -> None:
    root, port = share
    assert hpa(port, here, "get", "small.bin") == ""
    assert (here / "small.bin").read_bytes() == (root / "small.bin").read_bytes()
    run([tool("tftp"), "127.0.0.1", str(port), "-m", "ascii", "-c", "get", "text.txt"], here)
    assert (here / "text.txt").read_bytes() == (root / "text.txt").read_bytes()


def test_tftp_hpa_puts_binary_and_ascii(share: tuple[Path, int], here: Path) -> None:
    root, port = share
    (here / "up.bin").write_bytes(os.urandom(100_000))
    (here / "up.txt").write_bytes(b"a\nb\r\nc\r" * 500)
    assert hpa(port, here, "put", "up.bin") == ""
    run([tool("tftp"), "127.0.0.1", str(port), "-m", "ascii", "-c", "put", "up.txt"], here)
    assert (root / "up.bin").read_bytes() == (here / "up.bin").read_bytes()
    assert (root / "up.txt").read_bytes() == (here / "up.txt").read_bytes()
    assert "Error code 6" in hpa(port, here, "put", "up.bin")  # no overwriting


@pytest.mark.parametrize("option", ["blksize 1428", "windowsize 16"])
def test_atftp_with_options(share: tuple[Path, int], here: Path, option: str) -> None:
    root, port = share
    atftp = tool("atftp")
    args = [atftp, "--option", option, "-g", "-r", "small.bin", "-l", "got", "127.0.0.1"]
    result = run([*args, str(port)], here)
    assert (here / "got").read_bytes() == (root / "small.bin").read_bytes(), result.stderr
    (here / "sent").write_bytes(os.urandom(50_000))
    args = [atftp, "--option", option, "-p", "-l", "sent", "-r", "sent", "127.0.0.1"]
    result = run([*args, str(port)], here)
    assert (root / "sent").read_bytes() == (here / "sent").read_bytes(), result.stderr


def test_curl_with_a_block_size(share: tuple[Path, int], here: Path) -> None:
    root, port = share
    url = f"tftp://127.0.0.1:{port}/small.bin"
    result = run([tool("curl"), "-sS", "--tftp-blksize", "1024", url, "-o", "got"], here)
    assert result.returncode == 0, result.stderr
    assert (here / "got").read_bytes() == (root / "small.bin").read_bytes()


def test_block_numbers_roll_over_at_512_bytes(share: tuple[Path, int], here: Path) -> None:
    root, port = share
    tftp = tool("tftp")
    big = os.urandom(512 * 65_600)  # 65,601 blocks: past 65,535
    (root / "big.bin").write_bytes(big)
    result = run([tftp, "127.0.0.1", str(port), "-m", "binary", "-c", "get", "big.bin"], here)
    assert (here / "big.bin").read_bytes() == big, result.stdout


def test_ten_concurrent_downloads(share: tuple[Path, int], here: Path) -> None:
    root, port = share
    curl = tool("curl")
    url = f"tftp://127.0.0.1:{port}/small.bin"
    procs = [
        subprocess.Popen([curl, "-sS", url, "-o", f"got{i}"], cwd=here, stderr=subprocess.PIPE)
        for i in range(10)
    ]
    for proc in procs:
        proc.wait(WAIT)
        assert proc.stderr is not None
        proc.stderr.close()
    wanted = (root / "small.bin").read_bytes()
    assert [(here / f"got{i}").read_bytes() == wanted for i in range(10)] == [True] * 10


def test_upload_refused_without_allow_upload(read_only: tuple[Path, int], here: Path) -> None:
    root, port = read_only
    (here / "up.bin").write_bytes(b"data")
    assert "Error code 2: uploads are not allowed" in hpa(port, here, "put", "up.bin")
    assert sorted(p.name for p in root.iterdir()) == ["small.bin", "text.txt"]


def test_traversal_and_missing_files_are_answered(share: tuple[Path, int], here: Path) -> None:
    _, port = share
    assert "Error code 2" in hpa(port, here, "get", "../stderr")
    assert "Error code 2" in hpa(port, here, "get", "/etc/passwd")
    assert "Error code 1" in hpa(port, here, "get", "missing")
    got = here / "stderr"  # tftp-hpa makes the local file before it asks
    assert not got.exists() or got.stat().st_size == 0


def test_serve_tftp_refuses_a_stream_endpoint() -> None:
    result = run_cli("serve", "tftp", ".", "127.0.0.1:0")
    assert_one_line_error(result, 2, "TFTP runs over UDP: use udp://HOST:PORT")


def test_port_69_without_privileges_says_so() -> None:
    # /tmp: a directory the unprivileged user can reach (the bind fails before serving).
    command = socketeer_command("serve", "tftp", "/tmp", "udp://127.0.0.1:69")
    if os.geteuid() == 0:
        setpriv = tool("setpriv")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, timeout=WAIT, check=False)
    assert_one_line_error(result, 1, "permission denied (port 69 needs root or CAP_NET_BIND")


def test_only_an_ack_to_the_transfers_port_moves_it_on(share: tuple[Path, int]) -> None:
    """A forged ACK to the server's port (which anyone can aim at) sends nothing."""
    root, port = share
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.sendto(Request(False, "small.bin").encode(), ("127.0.0.1", port))
        first, tid = sock.recvfrom(65_536)
        assert parse(first) == Data(1, (root / "small.bin").read_bytes()[:512])
        assert tid[1] != port
        sock.sendto(Ack(1).encode(), ("127.0.0.1", port))
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recvfrom(65_536)
        sock.settimeout(5.0)
        sock.sendto(Ack(1).encode(), tid)
        second, source = sock.recvfrom(65_536)
        assert source == tid
        assert parse(second) == Data(2, (root / "small.bin").read_bytes()[512:1024])


def test_curl_over_ipv6(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    curl = tool("curl")
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(10_000)
    (root / "f").write_bytes(data)
    server = ServerProcess(["serve", "tftp", str(root), "udp://[::1]:0"], tmp_path / "stderr")
    try:
        (endpoint,) = server.wait_listening()
        result = run([curl, "-sS", f"tftp://[::1]:{endpoint.port}/f", "-o", "got"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "got").read_bytes() == data
    finally:
        assert server.stop() == 0


def test_socketeer_put_to_serve_tftp(share: tuple[Path, int], here: Path) -> None:
    root, port = share
    data = os.urandom(300_001)
    (here / "up.bin").write_bytes(data)
    result = run_cli("put", str(here / "up.bin"), f"tftp://127.0.0.1:{port}/sub.bin")
    assert result.returncode == 0, result.stderr
    assert (root / "sub.bin").read_bytes() == data
    result = run_cli("put", "-q", "-", f"tftp://127.0.0.1:{port}/piped.bin", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert (root / "piped.bin").read_bytes() == data


def test_socketeer_put_is_refused_without_allow_upload(
    read_only: tuple[Path, int], here: Path
) -> None:
    root, port = read_only
    (here / "up.bin").write_bytes(b"x" * 1000)
    result = run_cli("put", str(here / "up.bin"), f"tftp://127.0.0.1:{port}/up.bin")
    assert_one_line_error(
        result, 1, f"tftp://127.0.0.1:{port}/up.bin: error 2: uploads are not allowed"
    )
    assert not (root / "up.bin").exists()


def test_socketeer_put_takes_one_file(share: tuple[Path, int], here: Path) -> None:
    _, port = share
    (here / "up.bin").write_bytes(b"x")
    result = run_cli("put", str(here / "up.bin"), f"tftp://127.0.0.1:{port}/a", "b")
    assert_one_line_error(result, 2, "sends one file")
    result = run_cli("put", str(here), f"tftp://127.0.0.1:{port}/a")
    assert_one_line_error(result, 1, "is a directory")


@pytest.mark.parametrize(
    "option", [["--max-message", "10"], ["--idle-timeout", "5"], ["--max-conns", "3"]]
)
def test_serve_tftp_refuses_options_for_connections(tmp_path: Path, option: list[str]) -> None:
    result = run_cli("serve", "tftp", str(tmp_path), "udp://127.0.0.1:0", *option, timeout=20)
    assert_one_line_error(result, 2, f"{option[0]}: not for TFTP")
