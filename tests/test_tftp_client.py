"""The TFTP download client: against our server over the fake network, and against in.tftpd."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketeer.services.tftp import Settings, TftpServer
from socketeer.services.tftp.client import TftpDownload, TftpUpload
from socketeer.services.tftp.transfers import TftpError, download, upload
from support import assert_one_line_error, run_cli
from test_datagram import CLIENT, SERVER, FakeNet

WAIT = 10.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("options", [{}, {"blksize": "700", "windowsize": "8", "tsize": "0"}])
def test_a_download_over_a_lossy_network(
    tmp_path: Path, seed: int, options: dict[str, str]
) -> None:
    data = os.urandom(30_000)
    (tmp_path / "f").write_bytes(data)
    net = FakeNet(seed)
    server = TftpServer(tmp_path, settings=Settings(retries=8))
    got = io.BytesIO()

    def sink(payload: bytes, last: bool) -> None:
        got.write(payload)

    client = TftpDownload(SERVER, "f", sink, net.now, options=options, retries=8)
    net.attach(SERVER, server)
    net.attach(CLIENT, client)
    try:
        net.run(until=3000.0)
    finally:
        server.close()
    assert client.outcome == ""
    assert got.getvalue() == data
    assert client.size == (30_000 if options else None)


def test_an_option_the_client_did_not_ask_for_is_refused() -> None:
    client = TftpDownload(SERVER, "f", lambda b, _: None, 0.0)
    client.datagrams_to_send(0.0)
    client.receive_datagram(b"\x00\x06blksize\x001024\x00", ("203.0.113.1", 50000), 0.1)
    assert client.outcome == "the server's options were refused: blksize was not asked for"
    ((error, _),) = client.datagrams_to_send(0.1)
    assert error.startswith(b"\x00\x05\x00\x08")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "options", [{}, {"blksize": "700", "windowsize": "8", "tsize": "30000"}, {"blksize": "8"}]
)
def test_an_upload_over_a_lossy_network(tmp_path: Path, seed: int, options: dict[str, str]) -> None:
    data = os.urandom(30_000 if options.get("blksize") != "8" else 600)
    net = FakeNet(seed)
    server = TftpServer(tmp_path, allow_upload=True, settings=Settings(retries=8))
    client = TftpUpload(SERVER, "up", io.BytesIO(data), net.now, options=options, retries=8)
    net.attach(SERVER, server)
    net.attach(CLIENT, client)
    try:
        net.run(until=3000.0)
    finally:
        server.close()
    assert client.outcome == ""
    assert client.sent == len(data)
    assert (tmp_path / "up").read_bytes() == data


def test_an_upload_the_server_refuses_fails_with_its_error(tmp_path: Path) -> None:
    net = FakeNet(0, drop=0.0, dupe=0.0)
    server = TftpServer(tmp_path)
    client = TftpUpload(SERVER, "up", io.BytesIO(b"x"), net.now)
    net.attach(SERVER, server)
    net.attach(CLIENT, client)
    try:
        net.run(until=100.0)
    finally:
        server.close()
    assert client.outcome == "error 2: uploads are not allowed on this server"
    assert not (tmp_path / "up").exists()


def test_a_silent_server_fails_after_the_retries() -> None:
    client = TftpDownload(SERVER, "f", lambda b, _: None, 0.0, timeout=1.0, retries=3)
    client.datagrams_to_send(0.0)
    sent_at = []
    while not client.finished:
        due = client.get_timer()
        assert due is not None
        client.handle_timer(due)
        sent_at += [due for _ in client.datagrams_to_send(due)]
    assert sent_at == [1.0, 3.0, 7.0]
    assert client.outcome == "no answer from the server after 3 retries"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def tftpd(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """tftpd-hpa's in.tftpd in the foreground on a free port, serving a directory."""
    yield from run_tftpd(tmp_path)


@pytest.fixture
def tftpd_writable(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """in.tftpd that accepts uploads of new files (``--create``)."""
    yield from run_tftpd(tmp_path, "--create")


def run_tftpd(tmp_path: Path, *extra: str) -> Iterator[tuple[Path, int]]:
    program = shutil.which("in.tftpd")
    if program is None:
        pytest.skip("in.tftpd (tftpd-hpa) is not installed")
    if os.geteuid() != 0:
        pytest.skip("in.tftpd -s chroots, which needs root")
    root = tmp_path / "served"
    root.mkdir()
    port = free_udp_port()
    args = [program, "-L", "-a", f"127.0.0.1:{port}", "-u", "root", "-p", *extra, "-s", str(root)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield root, port
    finally:
        proc.terminate()
        proc.wait(WAIT)


def fetch(port: int, name: str, **kwargs: object) -> bytes:
    out = io.BytesIO()

    async def run() -> None:
        await asyncio.wait_for(download("127.0.0.1", port, name, out, **kwargs), WAIT)  # type: ignore[arg-type]

    asyncio.run(run())
    return out.getvalue()


@pytest.mark.parametrize("options", [{}, {"blksize": "1428", "tsize": "0"}, {"blksize": "8"}])
def test_downloads_from_in_tftpd(tftpd: tuple[Path, int], options: dict[str, str]) -> None:
    root, port = tftpd
    data = os.urandom(100_003)
    (root / "f.bin").write_bytes(data)
    assert fetch(port, "f.bin", options=options) == data


def test_netascii_from_in_tftpd(tftpd: tuple[Path, int]) -> None:
    root, port = tftpd
    (root / "t.txt").write_bytes(b"one\ntwo\r\nthree\n" * 100)
    assert fetch(port, "t.txt", mode="netascii") == b"one\ntwo\r\nthree\n" * 100


def test_a_missing_file_is_the_servers_error(tftpd: tuple[Path, int]) -> None:
    _, port = tftpd
    with pytest.raises(TftpError, match=r"/missing: error 1: File not found"):
        fetch(port, "missing")


def test_get_tftp_url_from_in_tftpd(tftpd: tuple[Path, int], tmp_path: Path) -> None:
    root, port = tftpd
    data = os.urandom(200_000)
    (root / "boot.img").write_bytes(data)
    here = tmp_path / "here"
    result = run_cli("get", f"tftp://127.0.0.1:{port}/boot.img", f"{here}/")
    assert result.returncode == 0, result.stderr
    assert (here / "boot.img").read_bytes() == data
    assert os.listdir(here) == ["boot.img"]  # the temporary file was renamed
    result = run_cli("get", "-q", f"tftp://127.0.0.1:{port}/boot.img", "-")
    assert result.stdout == data


def test_get_tftp_url_of_a_missing_file(tftpd: tuple[Path, int], tmp_path: Path) -> None:
    _, port = tftpd
    local = tmp_path / "local"
    result = run_cli("get", f"tftp://127.0.0.1:{port}/missing", str(local))
    assert_one_line_error(result, 1, f"tftp://127.0.0.1:{port}/missing: error 1: File not found")
    assert not local.exists()
    assert os.listdir(tmp_path) == ["served"]  # no temporary file left


@pytest.mark.parametrize(
    ("url", "message"),
    [("tftp://127.0.0.1:6969/", "names no file"), ("tftp:///f", "is not tftp://HOST[:PORT]/FILE")],
)
def test_get_refuses_a_bad_tftp_url(url: str, message: str) -> None:
    assert_one_line_error(run_cli("get", url), 2, message)


def send_up(port: int, name: str, data: bytes, **kwargs: object) -> int:
    async def run() -> int:
        return await asyncio.wait_for(
            upload("127.0.0.1", port, name, io.BytesIO(data), **kwargs),  # type: ignore[arg-type]
            WAIT,
        )

    return asyncio.run(run())


@pytest.mark.parametrize(
    "options", [{}, {"blksize": "1428", "tsize": "100003"}, {"blksize": "8", "windowsize": "4"}]
)
def test_uploads_to_in_tftpd(tftpd_writable: tuple[Path, int], options: dict[str, str]) -> None:
    root, port = tftpd_writable
    data = os.urandom(100_003 if options.get("blksize") != "8" else 5_000)
    assert send_up(port, "up.bin", data, options=options) == len(data)
    assert (root / "up.bin").read_bytes() == data


def test_put_tftp_url_to_in_tftpd(tftpd_writable: tuple[Path, int], tmp_path: Path) -> None:
    root, port = tftpd_writable
    data = os.urandom(200_000)
    (tmp_path / "boot.img").write_bytes(data)
    result = run_cli("put", str(tmp_path / "boot.img"), f"tftp://127.0.0.1:{port}/boot.img")
    assert result.returncode == 0, result.stderr
    assert (root / "boot.img").read_bytes() == data


def test_an_upload_in_tftpd_refuses(tftpd: tuple[Path, int], tmp_path: Path) -> None:
    _, port = tftpd
    (tmp_path / "f").write_bytes(b"x" * 10)
    result = run_cli("put", str(tmp_path / "f"), f"tftp://127.0.0.1:{port}/new")
    assert_one_line_error(result, 1, f"tftp://127.0.0.1:{port}/new: error ")
