"""The files service over real sockets: the Python client, the protocol by hand, plain downloads.

Servers run in this process, on asyncio's own loop in a thread; every test
checks what a user sees: the bytes of the files on both sides, which names
exist, the error codes, and what the server logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shares import TOKEN, ServeShare, Share, digest, partial_of, sha256, snapshot, write
from socketeer import Endpoint
from socketeer.services.files import Entry
from socketeer.services.files.client import FilesError, TransferProgress
from socketeer.services.files.connection import CLIENT, NEED_DATA, FilesConnection, frame
from socketeer.services.files.messages import Done, Error, Hello, List, Listing, Message, Put, Ready
from support import WAIT, wait_until

SEEDS = Path(__file__).parent / "seeds"
MIB = 1024 * 1024
needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")
pytestmark = pytest.mark.usefixtures("no_errors_logged")


# --- a share served in this process ---------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """The client's side: a directory of its own."""
    path = tmp_path / "local"
    path.mkdir()
    return path


def raises_code(code: str, action: Callable[[], object]) -> FilesError:
    """Run ``action``; it must fail with the files error ``code``."""
    with pytest.raises(FilesError) as info:
        action()
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    return info.value


class Interrupted(Exception):
    """A transfer broken off on purpose (a dropped network, a killed program)."""


class StopAfter(TransferProgress):
    """Breaks a transfer off once ``limit`` bytes have moved."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.moved = 0

    def advance(self, count: int) -> None:
        self.moved += count
        if self.moved >= self.limit:
            raise Interrupted(f"stopped after {self.moved} bytes")


class OnFirstBytes(TransferProgress):
    """Calls ``action`` once, when the first bytes of a transfer have moved."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.action: Callable[[], object] | None = action

    def advance(self, count: int) -> None:
        action, self.action = self.action, None
        if action is not None:
            action()


# --- raw sockets ----------------------------------------------------------------------


def tcp_connect(endpoint: Endpoint) -> socket.socket:
    return socket.create_connection((endpoint.connect_host, endpoint.port), timeout=WAIT)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (each recv waits at most WAIT)."""
    chunks = []
    deadline = time.monotonic() + WAIT
    while chunk := sock.recv(256 * 1024):
        chunks.append(chunk)
        assert time.monotonic() < deadline, "the server never closed the connection"
    return b"".join(chunks)


def plain_download(endpoint: Endpoint, request: bytes, half_close: bool = True) -> bytes:
    """Send ``request`` on a fresh connection; return all the server sent back."""
    with tcp_connect(endpoint) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)


class RawFilesClient:
    """The protocol by hand: a sans-IO FilesConnection over a plain socket."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.sock = tcp_connect(endpoint)
        self.conn = FilesConnection(CLIENT)

    def send(self, message: Message) -> None:
        self.sock.sendall(self.conn.send(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.conn.sent_raw(len(data))

    def receive(self) -> Message:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            event = self.conn.next_event()
            if isinstance(event, Message):
                return event
            assert event is NEED_DATA, f"unexpected {event!r}"
            self.conn.receive_data(self.sock.recv(65536))  # waits at most WAIT
        raise AssertionError("no message arrived")

    def close(self) -> None:
        self.sock.close()


# --- list, stat, download, upload, mkdir, delete --------------------------------------


def test_list_and_stat_report_name_type_size_mtime(share: Share) -> None:
    notes = write(share.root / "notes.txt", b"remember the milk\n", mtime=1_700_000_000.5)
    write(share.root / "sub" / "inner.bin", os.urandom(3000))
    (share.root / "sub" / "empty").mkdir()

    def entry(path: Path) -> Entry:
        st = path.stat()
        return Entry(path.name, "dir" if path.is_dir() else "file", st.st_size, st.st_mtime)

    with share.connect(token=None) as client:
        assert not client.writable
        assert client.server.startswith("socketeer ")
        assert client.list("") == [entry(share.root / "notes.txt"), entry(share.root / "sub")]
        assert client.list("sub") == [
            entry(share.root / "sub" / "empty"),
            entry(share.root / "sub" / "inner.bin"),
        ]
        assert client.stat("notes.txt") == Entry("notes.txt", "file", len(notes), 1_700_000_000.5)
        assert client.stat("sub/inner.bin") == entry(share.root / "sub" / "inner.bin")
        assert client.stat("./sub//empty") == entry(share.root / "sub" / "empty")
        assert client.stat("").type == "dir"
        assert [path for path, _ in client.walk("")] == [
            "notes.txt",
            "sub",
            "sub/empty",
            "sub/inner.bin",
        ]
        raises_code("not-found", lambda: client.stat("missing.txt"))
        raises_code("not-a-directory", lambda: client.list("notes.txt"))


def test_download_is_byte_identical_verified_and_keeps_the_mtime(share: Share, local: Path) -> None:
    data = write(share.root / "data.bin", os.urandom(9 * MIB + 77), mtime=1_650_000_000.25)
    with share.connect(token=None) as client:
        result = client.download("data.bin", local / "data.bin")
        raises_code("not-found", lambda: client.download("nope.bin", local / "nope.bin"))
        raises_code("not-a-file", lambda: client.download("", local / "root"))
    assert digest(local / "data.bin") == sha256(data)
    assert (local / "data.bin").stat().st_mtime == 1_650_000_000.25
    assert (result.size, result.sent, result.resumed_from) == (len(data), len(data), 0)
    assert result.sha256 == sha256(data)
    assert sorted(p.name for p in local.iterdir()) == ["data.bin"]


def test_upload_mkdir_and_delete(share: Share, local: Path) -> None:
    report = write(local / "report.bin", os.urandom(5 * MIB + 3), mtime=1_600_000_000.75)
    with share.connect() as client:
        assert client.writable
        client.mkdir("docs")
        client.mkdir("a/b/c", parents=True)
        client.mkdir("a/b", parents=True)  # exists: fine with parents
        raises_code("exists", lambda: client.mkdir("docs"))
        raises_code("not-found", lambda: client.mkdir("x/y"))
        result = client.upload(local / "report.bin", "docs/report.bin")
        assert digest(share.root / "docs" / "report.bin") == sha256(report)
        assert (share.root / "docs" / "report.bin").stat().st_mtime == 1_600_000_000.75
        assert (result.size, result.sent, result.resumed_from) == (len(report), len(report), 0)
        assert result.sha256 == sha256(report)
        assert client.stat("docs/report.bin").size == len(report)

        client.delete("docs/report.bin")
        assert not (share.root / "docs" / "report.bin").exists()
        raises_code("not-empty", lambda: client.delete("a"))
        assert (share.root / "a" / "b" / "c").is_dir()
        client.delete("a", recursive=True)
        client.delete("docs")
        raises_code("not-found", lambda: client.delete("docs"))
        raises_code("denied", lambda: client.delete(""))
    assert snapshot(share.root) == {}


def test_same_size_and_mtime_is_skipped_unless_forced(share: Share, local: Path) -> None:
    down = write(share.root / "down.bin", os.urandom(100_000), mtime=1_700_000_000)
    up = write(local / "up.bin", os.urandom(50_000), mtime=1_600_000_000)
    with share.connect() as client:
        client.download("down.bin", local / "down.bin")
        fetched = (local / "down.bin").stat().st_ino
        again = client.download("down.bin", local / "down.bin")
        assert (again.skipped, again.sent) == (True, 0)
        assert (local / "down.bin").stat().st_ino == fetched
        forced = client.download("down.bin", local / "down.bin", force=True)
        assert (forced.skipped, forced.sent) == (False, len(down))
        assert (local / "down.bin").stat().st_ino != fetched

        client.upload(local / "up.bin", "up.bin")
        received = (share.root / "up.bin").stat().st_ino
        again = client.upload(local / "up.bin", "up.bin")
        assert (again.skipped, again.sent) == (True, 0)
        assert (share.root / "up.bin").stat().st_ino == received
        forced = client.upload(local / "up.bin", "up.bin", force=True)
        assert (forced.skipped, forced.sent) == (False, len(up))
        assert (share.root / "up.bin").stat().st_ino != received
    assert (share.root / "up.bin").read_bytes() == up


@pytest.mark.parametrize("where", ["ipv6", "unix"])
def test_download_and_upload_over_ipv6_and_unix_sockets(
    serve_share: ServeShare, local: Path, tmp_path: Path, where: str
) -> None:
    if where == "ipv6":
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        endpoint = "[::1]:0"
    else:
        endpoint = f"unix://{tmp_path}/files.sock"
    share = serve_share(endpoint=endpoint)
    data = write(share.root / "a.bin", os.urandom(2 * MIB + 1))
    with share.connect() as client:
        client.download("a.bin", local / "a.bin")
        client.upload(local / "a.bin", "b.bin")
    assert digest(local / "a.bin") == sha256(data)
    assert digest(share.root / "b.bin") == sha256(data)


# --- plain downloads on the same port -------------------------------------------------


@needs_nc
def test_plain_download_with_nc(share: Share, tmp_path: Path) -> None:
    data = write(share.root / "notes.txt", os.urandom(3 * MIB + 5))
    out = tmp_path / "out"
    port = share.endpoint.port
    subprocess.run(
        ["sh", "-c", f"echo notes.txt | nc -N 127.0.0.1 {port} > {out}"],
        timeout=WAIT,
        check=True,
    )
    assert digest(out) == sha256(data)


def test_plain_download_with_a_seed_style_client(share: Share, tmp_path: Path) -> None:
    """The classic downloader: one send() of the bare name, recv() until closed."""
    data = write(share.root / "notes.txt", os.urandom(300_000))
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            str(SEEDS / "file_download_client.py"),
            str(share.endpoint.port),
            "notes.txt",
            str(out),
        ],
        timeout=WAIT,
        check=True,
    )
    assert digest(out) == sha256(data)


def test_plain_download_ended_by_half_close_and_crlf(share: Share) -> None:
    data = write(share.root / "é.txt", b"caf\xc3\xa9\n")
    write(share.root / "empty", b"")
    assert plain_download(share.endpoint, "é.txt".encode()) == data
    assert plain_download(share.endpoint, "é.txt\r\n".encode(), half_close=False) == data
    assert plain_download(share.endpoint, b"empty\n") == b""


@pytest.mark.parametrize(
    "name",
    [
        "missing.txt",
        "../outside/secret.txt",
        "..",
        "/etc/passwd",
        "sub",
        ".notes.txt.socketeer-part",
    ],
    ids=["unknown", "dotdot", "parent", "absolute", "directory", "partial"],
)
def test_plain_download_refusal_is_one_error_line(share: Share, tmp_path: Path, name: str) -> None:
    write(tmp_path / "outside" / "secret.txt", b"SECRET-BYTES\n")
    write(share.root / "notes.txt", b"NOTES-BYTES\n")
    write(share.root / ".notes.txt.socketeer-part", b"PARTIAL-BYTES")
    (share.root / "sub").mkdir()
    reply = plain_download(share.endpoint, name.encode() + b"\n")
    assert reply.startswith(b"error: ")
    assert reply.endswith(b"\n")
    assert reply.count(b"\n") == 1, reply
    for forbidden in (b"SECRET-BYTES", b"NOTES-BYTES", b"PARTIAL-BYTES", b"root:"):
        assert forbidden not in reply


# --- resume ---------------------------------------------------------------------------


def test_interrupted_download_resumes_from_its_partial(share: Share, local: Path) -> None:
    data = write(share.root / "big.bin", os.urandom(24 * MIB + 11))
    target = local / "big.bin"
    with share.connect(token=None) as client, pytest.raises(Interrupted):
        client.download("big.bin", target, progress=StopAfter(14 * MIB))
    kept = partial_of(target).read_bytes()
    assert 0 < len(kept) < len(data)
    assert sha256(data[: len(kept)]) == sha256(kept)
    assert not target.exists()

    with share.connect(token=None) as client:
        result = client.download("big.bin", target)
    assert result.resumed_from == len(kept)
    assert result.sent == len(data) - len(kept)
    assert result.sha256 == sha256(data)
    assert digest(target) == sha256(data)
    assert not partial_of(target).exists()


def test_resume_off_starts_over(share: Share, local: Path) -> None:
    data = write(share.root / "f.bin", os.urandom(MIB))
    write(partial_of(local / "f.bin"), data[:1000])
    with share.connect() as client:
        result = client.download("f.bin", local / "f.bin", resume=False)
    assert (result.resumed_from, result.sent) == (0, len(data))
    assert digest(local / "f.bin") == sha256(data)


def test_partial_longer_than_the_file_starts_over(share: Share, local: Path) -> None:
    data = write(share.root / "f.bin", os.urandom(100_000))
    write(partial_of(local / "f.bin"), os.urandom(200_000))  # left by an older, bigger version
    with share.connect() as client:
        result = client.download("f.bin", local / "f.bin")
    assert (result.resumed_from, result.sent) == (0, len(data))
    assert (local / "f.bin").read_bytes() == data


def test_corrupted_download_partial_is_fetched_again_from_the_start(
    share: Share, local: Path
) -> None:
    data = write(share.root / "big.bin", os.urandom(6 * MIB))
    spoiled = bytearray(data[: 3 * MIB])
    spoiled[12345] ^= 0xFF
    write(partial_of(local / "big.bin"), bytes(spoiled))
    with share.connect() as client:
        result = client.download("big.bin", local / "big.bin")
    assert (result.resumed_from, result.sent) == (0, len(data))
    assert result.sha256 == sha256(data)
    assert digest(local / "big.bin") == sha256(data)
    assert not partial_of(local / "big.bin").exists()


@pytest.mark.parametrize("before", ["absent", "old version"])
def test_interrupted_upload_resumes_from_the_servers_partial(
    share: Share, local: Path, before: str
) -> None:
    data = write(local / "big.bin", os.urandom(24 * MIB + 5))
    target = share.root / "big.bin"
    old = write(target, b"the old version\n") if before == "old version" else None
    with share.connect() as client, pytest.raises(Interrupted):
        client.upload(local / "big.bin", "big.bin", progress=StopAfter(9 * MIB))
    share.wait_settled()

    kept = partial_of(target).read_bytes()
    assert 0 < len(kept) < len(data)
    assert sha256(data[: len(kept)]) == sha256(kept)
    with share.connect() as client:
        assert ".big.bin.socketeer-part" not in [e.name for e in client.list("")]
        if old is None:
            assert not target.exists()
            raises_code("not-found", lambda: client.stat("big.bin"))
        else:
            assert target.read_bytes() == old
            assert client.stat("big.bin").size == len(old)
        result = client.upload(local / "big.bin", "big.bin")
    assert result.resumed_from == len(kept)
    assert result.sent == len(data) - len(kept)
    assert digest(target) == sha256(data)
    assert not partial_of(target).exists()


def test_corrupted_upload_partial_is_sent_again_from_the_start(share: Share, local: Path) -> None:
    data = write(local / "big.bin", os.urandom(6 * MIB))
    spoiled = bytearray(data[: 2 * MIB])
    spoiled[-1] ^= 0x01
    write(partial_of(share.root / "big.bin"), bytes(spoiled))
    with share.connect() as client:
        result = client.upload(local / "big.bin", "big.bin")
    assert (result.resumed_from, result.sent) == (0, len(data))
    assert digest(share.root / "big.bin") == sha256(data)
    assert not partial_of(share.root / "big.bin").exists()


# --- many clients at once -------------------------------------------------------------


def test_an_unverified_upload_does_not_resume_a_partial_it_cannot_check(
    share: Share, local: Path
) -> None:
    data = write(local / "x.bin", os.urandom(MIB))
    write(partial_of(share.root / "x.bin"), os.urandom(400_000))  # planted, or another file's
    with share.connect() as client:
        client.upload(local / "x.bin", "x.bin", verify=False)
    assert (share.root / "x.bin").read_bytes() == data


def test_twenty_concurrent_downloads_while_a_bystander_is_served(share: Share, local: Path) -> None:
    same = write(share.root / "same.bin", os.urandom(8 * MIB + 1))
    others = [write(share.root / f"f{n}.bin", os.urandom(MIB + n)) for n in range(10)]
    small = write(share.root / "small.txt", b"small and quick\n")
    all_begun = threading.Barrier(21, timeout=WAIT)
    bystander_done = threading.Event()

    class HeldOpen(TransferProgress):
        """Every download waits, mid-transfer, until the bystander has been served."""

        def begin(self, name: str, total: int, done: int) -> None:
            all_begun.wait()

        def advance(self, count: int) -> None:
            assert bystander_done.wait(WAIT)

    def fetch(n: int) -> str:
        remote = "same.bin" if n < 10 else f"f{n - 10}.bin"
        target = local / f"{n}-{remote}"
        with share.connect(token=None) as client:
            client.download(remote, target, progress=HeldOpen())
        return digest(target)

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(fetch, n) for n in range(20)]
        all_begun.wait()
        try:
            assert share.threaded.call(lambda: share.threaded.server.session_count) == 20
            with share.connect(token=None) as bystander:
                assert len(bystander.list("")) == 12
                assert bystander.stat("small.txt").size == len(small)
                bystander.download("small.txt", local / "small.txt")
            assert plain_download(share.endpoint, b"small.txt\n") == small
        finally:
            bystander_done.set()
        results = [future.result(timeout=WAIT) for future in futures]
    assert (local / "small.txt").read_bytes() == small
    assert results == [sha256(same)] * 10 + [sha256(o) for o in others]


# --- empty files and files over 4 GiB -------------------------------------------------


def test_empty_file_both_ways(share: Share, local: Path) -> None:
    write(share.root / "empty.down", b"")
    write(local / "empty.up", b"")
    with share.connect() as client:
        down = client.download("empty.down", local / "empty.down")
        up = client.upload(local / "empty.up", "empty.up")
        assert client.stat("empty.up") == Entry(
            "empty.up", "file", 0, (share.root / "empty.up").stat().st_mtime
        )
    assert (local / "empty.down").read_bytes() == b""
    assert (share.root / "empty.up").read_bytes() == b""
    assert down.sha256 == up.sha256 == sha256(b"")
    assert (down.size, down.sent, up.size, up.sent) == (0, 0, 0, 0)


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` at ``where`` if allowed; say whether it was mounted."""
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True, timeout=WAIT).returncode:
        yield False
        return
    try:
        yield True
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=WAIT).returncode:
            subprocess.run(["umount", "-l", str(where)], timeout=WAIT, check=True)


BIG = 4 * 1024**3 + 12345
MARKS = {0: b"head", 2**32 - 2: b"edge", BIG - 5: b"tail!"}


def sample(path: Path) -> list[bytes]:
    with path.open("rb") as file:
        return [os.pread(file.fileno(), 16, offset) for offset in (0, 2**32 - 8, BIG - 16)]


def test_file_over_4_gib(serve_share: ServeShare, tmp_path: Path) -> None:
    """Sizes, offsets and lengths past 2**32 survive stat, list, a full and a resumed download.

    Both sides live on one filesystem: a tmpfs when one can be mounted, since
    the full download writes 4 GiB.
    """
    with tmpfs(tmp_path / "big", "6g"):
        root, local = tmp_path / "big" / "share", tmp_path / "big" / "local"
        local.mkdir(parents=True)
        share = serve_share(root)
        source = root / "huge.bin"
        with source.open("wb") as file:
            file.truncate(BIG)  # sparse: zeros, except for the marks
            for offset, mark in MARKS.items():
                os.pwrite(file.fileno(), mark, offset)
        try:
            with share.connect(token=None) as client:
                assert client.stat("huge.bin").size == BIG
                assert [e.size for e in client.list("") if e.name == "huge.bin"] == [BIG]

                full = client.download("huge.bin", local / "huge.bin")
                assert (full.size, full.sent, full.resumed_from) == (BIG, BIG, 0)
                assert (local / "huge.bin").stat().st_size == BIG
                assert sample(local / "huge.bin") == sample(source)
                assert full.sha256 is not None
                assert full.sha256 == share.service.store.hashes.get(source.stat())
                (local / "huge.bin").unlink()

                # A partial that ends exactly at 2**32 (sparse too), resumed without hashing.
                with partial_of(local / "huge.bin").open("wb") as file:
                    file.truncate(2**32)
                    os.pwrite(file.fileno(), b"head", 0)
                    os.pwrite(file.fileno(), b"ed", 2**32 - 2)
                resumed = client.download("huge.bin", local / "huge.bin", verify=False)
            assert (resumed.resumed_from, resumed.sent, resumed.sha256) == (2**32, 12345, None)
            assert (local / "huge.bin").stat().st_size == BIG
            assert sample(local / "huge.bin") == sample(source)
        finally:
            share.stop()  # nothing may hold the tmpfs when it is unmounted


# --- names beyond ASCII ---------------------------------------------------------------


def test_non_ascii_names(share: Share, local: Path) -> None:
    party = write(share.root / "🎉 party.bin", os.urandom(70_000))
    cafe = write(local / "café.txt", "crème brûlée\n".encode())
    with share.connect() as client:
        client.mkdir("中文/子目录", parents=True)
        client.upload(local / "café.txt", "中文/子目录/café.txt")
        client.download("🎉 party.bin", local / "🎉 party.bin")
        assert [e.name for e in client.list("")] == ["中文", "🎉 party.bin"]
        assert [e.name for e in client.list("中文/子目录")] == ["café.txt"]
        assert client.stat("中文/子目录/café.txt").size == len(cafe)
        client.download("中文/子目录/café.txt", local / "é-back.txt")
    assert (share.root / "中文" / "子目录" / "café.txt").read_bytes() == cafe
    assert digest(local / "🎉 party.bin") == sha256(party)
    assert (local / "é-back.txt").read_bytes() == cafe


# --- paths stay inside the shared directory -------------------------------------------


@pytest.mark.parametrize(
    "remote",
    [
        "../outside/secret.txt",
        "/OUTSIDE/secret.txt",
        "..\\outside\\secret.txt",
        "C:secret.txt",
        "secret.txt\x00.png",
        "x" * 256,
        "é" * 128,
        "link-to-file",
        "link-to-dir/secret.txt",
        "link-to-dir",
    ],
    ids=[
        "dotdot",
        "absolute",
        "backslash",
        "drive-letter",
        "nul-byte",
        "name-over-255-bytes",
        "utf8-name-over-255-bytes",
        "symlink-to-file-outside",
        "through-symlink-to-dir-outside",
        "symlink-to-dir-outside",
    ],
)
def test_paths_outside_the_share_are_refused(
    share: Share, local: Path, tmp_path: Path, remote: str
) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret.txt", b"top secret\n")
    (share.root / "link-to-file").symlink_to(outside / "secret.txt")
    (share.root / "link-to-dir").symlink_to(outside, target_is_directory=True)
    remote = remote.replace("/OUTSIDE", str(outside))
    upload = write(local / "upload.txt", b"must not land anywhere\n")
    before_outside, before_share = snapshot(outside), snapshot(share.root)

    with share.connect() as client:
        raises_code("bad-path", lambda: client.stat(remote))
        raises_code("bad-path", lambda: client.list(remote))
        raises_code("bad-path", lambda: client.download(remote, local / "got"))
        raises_code("bad-path", lambda: client.upload(local / "upload.txt", remote))
        raises_code("bad-path", lambda: client.mkdir(remote, parents=True))
        raises_code("bad-path", lambda: client.delete(remote, recursive=True))
        assert client.stat("").type == "dir"  # the connection is still good
    assert snapshot(outside) == before_outside
    assert snapshot(share.root) == before_share
    assert snapshot(local) == {"upload.txt": upload}


def test_symlink_inside_the_share_is_followed(share: Share, local: Path) -> None:
    data = write(share.root / "real" / "data.bin", os.urandom(1000))
    (share.root / "alias").symlink_to(share.root / "real", target_is_directory=True)
    with share.connect() as client:
        assert client.stat("alias").type == "dir"
        client.download("alias/data.bin", local / "data.bin")
    assert digest(local / "data.bin") == sha256(data)


# --- who may write --------------------------------------------------------------------


def test_read_only_server_refuses_writes(serve_share: ServeShare, local: Path) -> None:
    share = serve_share(allow_upload=False, token=None)
    keep = write(share.root / "keep.txt", b"keep me\n")
    write(local / "new.txt", b"new\n")
    before = snapshot(share.root)
    with share.connect(token=None) as client:
        assert not client.writable
        raises_code("read-only", lambda: client.upload(local / "new.txt", "new.txt"))
        raises_code("read-only", lambda: client.upload(local / "new.txt", "keep.txt", force=True))
        raises_code("read-only", lambda: client.mkdir("dir"))
        raises_code("read-only", lambda: client.delete("keep.txt"))
        assert client.stat("keep.txt").size == len(keep)  # reading still works
    assert snapshot(share.root) == before


def test_read_only_server_ignores_a_clients_token(serve_share: ServeShare, local: Path) -> None:
    share = serve_share(allow_upload=False, token=None)
    keep = write(share.root / "keep.txt", b"keep me\n")
    write(local / "new.txt", b"new\n")
    before = snapshot(share.root)
    with share.connect(token="anything") as client:  # e.g. SOCKETEER_TOKEN left exported
        assert not client.writable
        client.download("keep.txt", local / "keep.txt")
        raises_code("read-only", lambda: client.upload(local / "new.txt", "new.txt"))
    assert (local / "keep.txt").read_bytes() == keep
    assert snapshot(share.root) == before


def test_writable_server_refuses_writes_without_the_token(share: Share, local: Path) -> None:
    write(share.root / "keep.txt", b"keep me\n")
    write(local / "new.txt", b"new\n")
    before = snapshot(share.root)
    with share.connect(token=None) as client:
        assert not client.writable
        raises_code("unauthorized", lambda: client.upload(local / "new.txt", "new.txt"))
        raises_code("unauthorized", lambda: client.mkdir("dir"))
        raises_code("unauthorized", lambda: client.delete("keep.txt"))
        client.download("keep.txt", local / "keep.txt")  # reading needs no token
    assert snapshot(share.root) == before


def test_wrong_token_is_refused_at_connect(share: Share) -> None:
    before = snapshot(share.root)
    for wrong in ("s3cre", "s3cret ", "S3CRET", "x" * 1000):
        with pytest.raises(FilesError) as refused:
            share.connect(token=wrong)
        assert refused.value.code == "unauthorized"
        assert "wrong token" in str(refused.value)
    with share.connect(token=TOKEN) as client:
        assert client.writable
        client.mkdir("made")
    assert snapshot(share.root) == {**before, "made": None}


# --- an upload in progress is invisible -----------------------------------------------


@pytest.mark.parametrize("before", ["absent", "old version"])
def test_upload_in_progress_is_invisible_and_a_bad_hash_replaces_nothing(
    share: Share, before: str
) -> None:
    data = os.urandom(4 * MIB)
    half = len(data) // 2
    target = share.root / "doc.bin"
    old = write(target, b"old content\n") if before == "old version" else None

    raw = RawFilesClient(share.endpoint)
    try:
        raw.send(Hello(token=TOKEN))
        assert raw.receive().op == "welcome"
        raw.send(Put("doc.bin", len(data), None))
        assert raw.receive() == Ready(0)
        raw.send_raw(data[:half])
        partial = partial_of(target)
        wait_until(
            lambda: partial.exists() and partial.stat().st_size == half, "half the upload on disk"
        )
        with share.connect(token=None) as reader:
            assert [e.name for e in reader.list("")] == ([] if old is None else ["doc.bin"])
            if old is None:
                assert not target.exists()
                raises_code("not-found", lambda: reader.stat("doc.bin"))
                assert plain_download(share.endpoint, b"doc.bin\n").startswith(b"error: ")
            else:
                assert target.read_bytes() == old
                assert reader.stat("doc.bin").size == len(old)
                assert plain_download(share.endpoint, b"doc.bin\n") == old
        with share.connect() as rival:  # a second upload to the same name waits its turn
            rival_file = write(share.root.parent / "rival.bin", b"rival\n")
            raises_code("busy", lambda: rival.upload(share.root.parent / "rival.bin", "doc.bin"))
            assert rival_file not in partial.read_bytes()
        raw.send_raw(data[half:])
        raw.send(Done("0" * 64))
        reply = raw.receive()
        assert isinstance(reply, Error)
        assert reply.code == "mismatch"
        # The connection goes on after a refused upload.
        raw.send(List(""))
        listing = raw.receive()
        assert isinstance(listing, Listing)
    finally:
        raw.close()
    assert [e.name for e in listing.entries] == ([] if old is None else ["doc.bin"])
    if old is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == old
    assert not partial_of(target).exists()


# --- failures -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3 * MIB, 24 * MIB], ids=["after-the-last-byte", "mid-stream"])
def test_full_disk(serve_share: ServeShare, local: Path, tmp_path: Path, size: int) -> None:
    small = tmp_path / "small"
    with tmpfs(small, "2m") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        share = serve_share(small)
        kept = write(small / "kept.txt", b"was here before\n")
        big = write(local / "big.bin", os.urandom(size))
        try:
            with share.connect() as bystander, share.connect() as client:
                error = raises_code("no-space", lambda: client.upload(local / "big.bin", "big.bin"))
                assert "no space" in str(error).lower()
                assert [e.name for e in client.list("")] == ["kept.txt"]  # still usable
                assert [e.name for e in bystander.list("")] == ["kept.txt"]
                bystander.download("kept.txt", local / "kept.txt")
            assert (local / "kept.txt").read_bytes() == kept
            assert not (small / "big.bin").exists()
            kept_part = partial_of(small / "big.bin").read_bytes()  # kept, as documented
            assert sha256(big[: len(kept_part)]) == sha256(kept_part)
            with share.connect() as later:
                later.delete("kept.txt")
            assert not (small / "kept.txt").exists()
        finally:
            share.stop()  # nothing may hold the tmpfs when it is unmounted


def test_permission_denied(share: Share, local: Path) -> None:
    locked = share.root / "locked"
    inside = write(locked / "file.txt", b"inside\n")
    write(local / "new.txt", b"new\n")
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores permissions and chattr is not installed")
        lock = subprocess.run(["chattr", "+i", str(locked)], capture_output=True, timeout=WAIT)
        if lock.returncode:
            pytest.skip(f"chattr +i is not supported here: {lock.stderr.decode().strip()}")
        unlock = ["chattr", "-i", str(locked)]
    else:
        locked.chmod(0o500)
        unlock = ["chmod", "700", str(locked)]
    try:
        before = snapshot(share.root)
        with share.connect() as client:
            raises_code("denied", lambda: client.upload(local / "new.txt", "locked/new.txt"))
            raises_code("denied", lambda: client.mkdir("locked/sub"))
            raises_code("denied", lambda: client.delete("locked/file.txt"))
            client.download("locked/file.txt", local / "file.txt")
        assert snapshot(share.root) == before
    finally:
        subprocess.run(unlock, timeout=WAIT, check=True)
    assert (local / "file.txt").read_bytes() == inside


@pytest.mark.parametrize("change", ["grow", "shrink", "rewrite", "touch"])
def test_file_changing_while_sent(share: Share, local: Path, change: str) -> None:
    path = share.root / "moving.bin"
    # Far more than the socket buffers hold: the server is still sending when it changes.
    write(path, os.urandom(32 * MIB), mtime=1_500_000_000)

    def alter() -> None:
        if change == "touch":
            path.touch()
            return
        with path.open("r+b") as file:
            if change == "grow":
                file.seek(0, os.SEEK_END)
                file.write(b"more")
            elif change == "shrink":
                file.truncate(MIB)
            else:
                file.write(os.urandom(MIB))  # same size, other bytes

    with share.connect(token=None) as client:
        progress = OnFirstBytes(alter)
        error = raises_code(
            "changed",
            lambda: client.download("moving.bin", local / "moving.bin", progress=progress),
        )
        assert "changed" in str(error)
        assert list(local.iterdir()) == []  # neither the target nor a partial
        # The same connection goes on; the next try gets the new version, whole.
        client.download("moving.bin", local / "moving.bin")
    assert digest(local / "moving.bin") == digest(path)


def test_a_file_rewritten_with_its_old_mtime_is_hashed_again(share: Share, local: Path) -> None:
    # Same size, other bytes, the modification time set back (touch -d, tar x, cp -p):
    # the server must not answer with the hash it remembers for the old bytes.
    path = share.root / "same.bin"
    write(path, b"A" * 100_000, mtime=1_500_000_000)
    with share.connect(token=None) as client:
        client.download("same.bin", local / "first.bin")
        write(path, b"B" * 100_000, mtime=1_500_000_000)
        client.download("same.bin", local / "second.bin")
    assert (local / "second.bin").read_bytes() == b"B" * 100_000


def test_client_vanishing_mid_download_is_logged(
    share: Share, local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    data = write(share.root / "big.bin", os.urandom(24 * MIB))
    with share.connect(token=None) as client, pytest.raises(Interrupted):
        client.download("big.bin", local / "big.bin", progress=StopAfter(MIB))
    share.wait_settled()
    assert "transfer ended" in caplog.text
    with share.connect(token=None) as second:
        second.download("big.bin", local / "second.bin")
    assert digest(local / "second.bin") == sha256(data)


def test_client_vanishing_while_another_downloads_the_same_file(share: Share, local: Path) -> None:
    """Concurrent downloads of one file share its hashing; one leaving must not spoil it."""
    path = share.root / "shared.bin"
    with path.open("wb") as file:
        file.truncate(256 * MIB)  # sparse: quick to send, still takes a while to hash
        file.write(os.urandom(MIB))
    first_started, second_started = threading.Event(), threading.Event()

    class LeaveOnceTheOtherStarted(TransferProgress):
        def begin(self, name: str, total: int, done: int) -> None:
            first_started.set()

        def advance(self, count: int) -> None:
            assert second_started.wait(WAIT)
            raise Interrupted

    def leave() -> None:
        with share.connect(token=None) as first, pytest.raises(Interrupted):
            first.download("shared.bin", local / "first.bin", progress=LeaveOnceTheOtherStarted())

    with ThreadPoolExecutor(max_workers=1) as pool:
        leaving = pool.submit(leave)
        assert first_started.wait(WAIT)  # the server is hashing for the first client
        with share.connect(token=None) as second:
            result = second.download(
                "shared.bin", local / "second.bin", progress=OnFirstBytes(second_started.set)
            )
        leaving.result(timeout=WAIT)
    assert result.sha256 == digest(path)
    assert digest(local / "second.bin") == result.sha256
    share.wait_settled()
    assert share.service.store.hashes.get(path.stat()) == result.sha256  # what later ones get


def test_client_vanishing_mid_upload_is_logged(
    share: Share, local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    data = write(local / "big.bin", os.urandom(24 * MIB))
    with share.connect() as client, pytest.raises(Interrupted):
        client.upload(local / "big.bin", "big.bin", progress=StopAfter(MIB))
    share.wait_settled()
    assert "closed in the middle" in caplog.text
    assert not (share.root / "big.bin").exists()
    with share.connect() as second:
        second.upload(local / "big.bin", "other.bin")
    assert digest(share.root / "other.bin") == sha256(data)


# --- protocol versions ----------------------------------------------------------------


def test_hello_with_another_version_is_refused_and_the_port_still_serves(share: Share) -> None:
    notes = write(share.root / "notes.txt", b"still here\n")
    with tcp_connect(share.endpoint) as sock:
        sock.sendall(frame(Hello(version=2)))
        reply = read_until_closed(sock)  # the server closes after its answer
    length = int.from_bytes(reply[:4], "big")
    assert len(reply) == 4 + length, "one frame, then the connection closes"
    body = json.loads(reply[4:])
    assert (body["op"], body["code"], body["supported"]) == ("error", "version", [1])
    assert "version 2" in body["message"]

    assert plain_download(share.endpoint, b"notes.txt\n") == notes
    with share.connect(token=None) as client:
        assert client.stat("notes.txt").size == len(notes)


def test_a_directory_whose_listing_is_over_the_clients_limit_is_a_clear_error(
    share: Share,
) -> None:
    # 70,000 names of 240 bytes: a 20 MiB listing.  A local user can make one.
    big = share.root / "big"
    big.mkdir()
    for number in range(70_000):
        os.close(os.open(big / f"{number:06d}{'n' * 234}", os.O_CREAT | os.O_WRONLY))
    with share.connect(token=None) as client:
        error = raises_code("too-large", lambda: client.list("big"))
        assert "big" in str(error)
        assert client.list("") == [client.stat("big")]  # the connection goes on
