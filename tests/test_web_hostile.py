"""The files service over HTTP against hostile clients: slow, lying, greedy, confusing."""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest

from shares import TOKEN, Share, write
from socketeer import ServerConfig
from socketeer.services.files import FilesService
from support import WAIT, ThreadedServer, recv_all, wait_until

pytestmark = pytest.mark.usefixtures("no_errors_logged")

AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


def connect(share: Share) -> socket.socket:
    sock = socket.create_connection((share.endpoint.host, share.endpoint.port), WAIT)
    sock.settimeout(WAIT)
    return sock


def put_head(name: str, length: int, close: bool = True) -> bytes:
    return (
        f"PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n".encode()
        + AUTH
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
    )


def visible_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".socketeer-part"))


@pytest.fixture
def quick_share(tmp_path: Path) -> Iterator[Share]:
    """A writable share whose idle timeout is short."""
    root = tmp_path / "share"
    root.mkdir()
    service = FilesService(root, allow_upload=True, token=TOKEN, partial_ttl=0)
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=0.5))
    (endpoint,) = threaded.start()
    try:
        yield Share(root, endpoint, threaded, service)
    finally:
        threaded.stop()


def test_a_body_a_byte_at_a_time_is_cut_off_and_nothing_lands(quick_share: Share) -> None:
    with connect(quick_share) as sock:
        sock.sendall(put_head("slow.bin", 1000))
        started = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() - started < WAIT:
            try:
                sock.sendall(b"x")
                got = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not got:
                break
            answer += got
        assert time.monotonic() - started < 5
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
    assert visible_names(quick_share.root) == []


def test_a_body_shorter_than_its_length_leaves_nothing_visible(share: Share) -> None:
    write(share.root / "kept.bin", b"the old bytes")
    for name in ("new.bin", "kept.bin"):
        with connect(share) as sock:
            sock.sendall(put_head(name, 10_000_000) + os.urandom(3_000_000))
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock).startswith(b"HTTP/1.1 400 ")
    assert visible_names(share.root) == ["kept.bin"]
    assert (share.root / "kept.bin").read_bytes() == b"the old bytes"


def test_a_body_then_more_requests_on_the_same_connection(share: Share) -> None:
    """A body received past the parser: what follows it is the next request, whole."""
    data = os.urandom(5 * 1024 * 1024 + 3)
    with connect(share) as sock:
        sock.sendall(
            put_head("one.bin", len(data), close=False)
            + data
            + put_head("two.bin", 3, close=False)
            + b"abc"
            + b"GET /two.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answers = recv_all(sock)
    assert answers.count(b"HTTP/1.1 201 ") == 2
    assert answers.endswith(b"\r\n\r\nabc")
    assert (share.root / "one.bin").read_bytes() == data


def test_uploads_use_the_pooled_buffers_and_give_them_back(share: Share) -> None:
    data = os.urandom(6 * 1024 * 1024)
    pool = share.service.buffers
    seen: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            seen.append(pool.lent)
            time.sleep(0.001)

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        with connect(share) as sock:
            sock.sendall(put_head("pooled.bin", len(data)))
            for start in range(0, len(data), 256 * 1024):
                sock.sendall(data[start : start + 256 * 1024])
                time.sleep(0.002)
            assert recv_all(sock).startswith(b"HTTP/1.1 201 ")
    finally:
        sampling.set()
        watcher.join(WAIT)
    assert max(seen) > 0
    assert (share.root / "pooled.bin").read_bytes() == data
    share.wait_settled()
    assert pool.lent == 0


@pytest.mark.parametrize(
    "body",
    [
        b"1" * 100_000,  # a chunk-size line that never ends
        b"5;" + b"e" * 100_000,  # a chunk extension that never ends
    ],
)
def test_chunk_size_lines_are_bounded(share: Share, body: bytes) -> None:
    with connect(share) as sock:
        sock.sendall(
            b"PUT /chunked.bin HTTP/1.1\r\nHost: x\r\n"
            + AUTH
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + body
        )
        answer = recv_all(sock)
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 "))
    assert visible_names(share.root) == []


def test_ten_thousand_pipelined_requests_on_one_connection(share: Share) -> None:
    write(share.root / "small", b"hello")
    count = 10_000
    request = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers: list[bytes] = []
    with connect(share) as sock:
        sock.settimeout(120)
        reader = threading.Thread(target=lambda: answers.append(recv_all(sock)))
        reader.start()
        sock.sendall(request * count + last)
        reader.join(120)
    assert answers, "the answers did not come in time"
    assert answers[0].count(b"HTTP/1.1 200 OK\r\n") == count + 1
    assert answers[0].count(b"\r\n\r\nhello") == count + 1


def test_a_list_of_ranges_gets_one_answer(share: Share) -> None:
    write(share.root / "ten", b"0123456789")
    with connect(share) as sock:
        sock.sendall(
            b"GET /ten HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,2-3\r\nConnection: close\r\n\r\n"
        )
        answer = recv_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 206 "))
    assert body in (b"0123456789", b"01")


def test_a_file_swapped_for_a_symlink_during_its_download(share: Share, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret", b"S" * 1000)
    data = write(share.root / "big.bin", os.urandom(16 * 1024 * 1024))
    with connect(share) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first = sock.recv(65536)
        (share.root / "big.bin").unlink()
        (share.root / "big.bin").symlink_to(secret)
        answer = first + recv_all(sock)
    assert answer.partition(b"\r\n\r\n")[2] == data  # the file that was opened, to its end
    with connect(share) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        again = recv_all(sock)
    assert again.startswith(b"HTTP/1.1 400 ")  # a link out of the share, as before
    assert b"SSS" not in again


def test_two_puts_of_one_name_at_once_never_mix(share: Share) -> None:
    size = 4 * 1024 * 1024
    with connect(share) as first, connect(share) as second:
        first.sendall(put_head("same.bin", size) + b"A" * (size // 2))
        time.sleep(0.2)
        second.sendall(put_head("same.bin", size) + b"B" * (size // 2))
        second_answer = recv_all(second)
        first.sendall(b"A" * (size // 2))
        first_answer = recv_all(first)
    assert first_answer.startswith(b"HTTP/1.1 201 ")
    assert second_answer.startswith(b"HTTP/1.1 423 ")
    assert (share.root / "same.bin").read_bytes() == b"A" * size


@pytest.mark.parametrize(
    ("name", "looks_like", "shown"),
    [
        ("\u202etxt.exe", "exe.txt", "\\u202etxt.exe"),  # a right-to-left override
        ("a\nb", "a b", "a\\x0ab"),  # a newline shows as a space in a page
        ("pay\u200bpal", "paypal", "pay\\u200bpal"),  # a zero-width space
        ("notes.txt ", "notes.txt", "notes.txt\\x20"),  # a space a link does not show
        (" notes.txt", "notes.txt", "\\x20notes.txt"),
        ("cafe\u0301.txt", "caf\u00e9.txt", "cafe\\u0301.txt"),  # decomposed (NFD)
        ("\u1100\u1161", "\uac00", "\\u1100\\u1161"),  # Hangul jamo, composed as one
    ],
)
def test_names_that_look_like_others_are_shown_with_their_escapes(
    share: Share, name: str, looks_like: str, shown: str
) -> None:
    write(share.root / name, b"tricky")
    write(share.root / looks_like, b"plain")
    with connect(share) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        page = recv_all(sock).decode()
    assert f">{shown}</a>" in page
    assert f">{looks_like}</a>" in page
    assert name not in page


def get_capped(share: Share, target: str, cap: int) -> tuple[int | None, bytes, bool]:
    """GET ``target``: the status, the body (at most about ``cap`` bytes) and whether it ended."""
    conn = h11.Connection(h11.CLIENT)
    status: int | None = None
    body = bytearray()
    with connect(share) as sock:
        request = h11.Request(method="GET", target=target, headers=[("host", "x")])
        sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        while len(body) <= cap:
            conn.receive_data(sock.recv(65536))
            while (event := conn.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return status, bytes(body), True
    return status, bytes(body), False


def test_a_zip_of_a_tree_with_symlink_loops_holds_each_directory_once(share: Share) -> None:
    write(share.root / "d" / "one.txt", b"one")
    write(share.root / "d" / "sub" / "two.txt", b"two")
    (share.root / "d" / "self").symlink_to(".")  # two ways back: each level doubles
    (share.root / "d" / "again").symlink_to(".")
    (share.root / "d" / "sub" / "up").symlink_to("..")
    (share.root / "d" / "sub2").symlink_to("sub")  # another way to a directory zipped already
    status, body, ended = get_capped(share, "/d/?zip", 8 * 1024 * 1024)
    assert status == 200
    assert ended, "the zip went on past 8 MiB"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert sorted(archive.namelist()) == ["d/one.txt", "d/sub/", "d/sub/two.txt"]
        assert archive.read("d/sub/two.txt") == b"two"


def test_downloads_never_read_are_closed_without_a_traceback(
    quick_share: Share, caplog: pytest.LogCaptureFixture
) -> None:
    """The idle sweep closes a client that stopped reading mid-download (asyncio's sendfile
    in flight, or waiting for the answers before it to leave): nothing is logged as an error."""
    caplog.set_level(logging.INFO)
    write(quick_share.root / "big.bin", os.urandom(16 * 1024 * 1024))
    request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(quick_share) as one, connect(quick_share) as many:
        for sock in (one, many):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        one.sendall(request)
        many.sendall(request * 3)
        wait_until(lambda: closed(caplog) >= 2, "the idle sweep to close both")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def closed(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().startswith("closed 127.0.0.1") for r in caplog.records)
