"""Requests handled in batches: lookups that share their walk, small uploads stored
together, a tree's downloads landing through one descriptor per directory."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripted_files_server import ScriptedFilesServer
from shares import TOKEN, Share
from shares import sha256 as sha
from shares import write as shared_write
from socketeer.cli import cli
from socketeer.services.files.beneath import Directories
from socketeer.services.files.client import FilesClient, FilesError, TransferResult
from socketeer.services.files.connection import FilesConnection, frame
from socketeer.services.files.messages import (
    Done,
    Entry,
    FileHeader,
    Get,
    Hello,
    List,
    Listing,
    Message,
    Welcome,
    decode,
)
from socketeer.services.files.paths import partial_name
from socketeer.services.files.store import FileStore, StoreError
from socketeer.stream import TransportStream
from support import WAIT

MTIME = 1_600_000_000.0


def write(path: Path, data: bytes, mtime: float = MTIME) -> Path:
    """``data`` written at ``path``, stamped ``mtime``."""
    shared_write(path, data, mtime)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A share with files, a directory, and symlinks that stay inside and that lead out."""
    root = tmp_path / "share"
    write(root / "notes.txt", b"notes")
    write(root / "docs" / "readme.md", b"# readme")
    write(root / "docs" / "deeper" / "more.md", b"more")
    outside = tmp_path / "outside"
    write(outside / "secret.txt", b"secret")
    (root / "inside-link").symlink_to("notes.txt")
    (root / "docs-link").symlink_to("docs", target_is_directory=True)
    (root / "docs" / "up-link").symlink_to("../notes.txt")
    (root / "secret-link").symlink_to(outside / "secret.txt")
    (root / "outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "escape").symlink_to("../outside/secret.txt")
    return root


@pytest.fixture
def store(root: Path) -> Iterator[FileStore]:
    store = FileStore(root)
    yield store
    store.close()


def outcome(store: FileStore, remote: str, walks: Directories | None = None) -> object:
    """What opening ``remote`` gave: the file's (content, size), or the error code."""
    try:
        file, st = store.open_file(remote, walks=walks)
    except StoreError as exc:
        return exc.code
    with file:
        return file.read().decode(), st.st_size


PATHS = [
    "notes.txt",
    "docs/readme.md",
    "docs/deeper/more.md",
    "inside-link",
    "docs-link/readme.md",
    "docs-link/deeper/more.md",
    "docs/up-link",
    "docs-link/up-link",
    "secret-link",
    "outside-dir/secret.txt",
    "escape",
    "nothing-here",
    "docs/nothing",
    "notes.txt/under-a-file",
    "nothing/below",
    "docs",
    "",
]


def test_a_batch_of_lookups_opens_what_one_lookup_each_would(store: FileStore) -> None:
    alone = [outcome(store, path) for path in PATHS]
    with store.directories() as walks:
        together = [outcome(store, path, walks) for path in PATHS]
    assert together == alone
    assert "secret" not in repr(together)
    assert together[PATHS.index("secret-link")] == "bad-path"


def test_a_batch_walks_to_each_directory_once_and_closes_them_all(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            opened.append(path)
        return fd

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "open", counting_open)
    with store.directories() as walks:
        for _ in range(3):
            for name in ("readme.md", "deeper/more.md"):
                file, _ = store.open_file(f"docs/{name}", walks=walks)
                file.close()
    monkeypatch.undo()
    assert sorted(opened) == ["deeper", "docs"]
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_batch_sees_a_symlink_swapped_in_as_the_last_name(store: FileStore, root: Path) -> None:
    with store.directories() as walks:
        assert outcome(store, "docs/readme.md", walks) == ("# readme", 8)
        (root / "docs" / "readme.md").unlink()
        (root / "docs" / "readme.md").symlink_to(root.parent / "outside" / "secret.txt")
        assert outcome(store, "docs/readme.md", walks) == "bad-path"


# --- small uploads stored together ---------------------------------------------------------


def receive(
    store: FileStore,
    walks: Directories,
    remote: str,
    data: bytes,
    *,
    digest: str | None = None,
    mtime: float | None = MTIME,
    force: bool = False,
    where: tuple[str, ...] | None = None,
) -> tuple[str, ...] | None:
    return store.receive_whole(
        remote,
        data,
        mtime,
        sha(data) if digest is None else digest,
        force=force,
        walks=walks,
        where=where,
    )


def test_whole_uploads_land_with_their_mtime_and_the_same_file_is_skipped(
    store: FileStore, root: Path
) -> None:
    with store.directories() as walks:
        assert receive(store, walks, "docs/new.bin", b"new") == ("docs", "new.bin")
        assert receive(store, walks, "docs-link/other.bin", b"other") == ("docs", "other.bin")
        assert receive(store, walks, "notes.txt", b"notes") is None  # same size and mtime
        assert receive(store, walks, "notes.txt", b"fresh", force=True) == ("notes.txt",)
        walks.sync()
    assert (root / "docs" / "new.bin").read_bytes() == b"new"
    assert (root / "docs" / "other.bin").read_bytes() == b"other"
    assert (root / "notes.txt").read_bytes() == b"fresh"
    assert (root / "docs" / "new.bin").stat().st_mtime == MTIME
    assert not [path for path in root.rglob("*") if path.name.endswith(".socketeer-part")]


def test_a_whole_upload_that_does_not_verify_replaces_nothing_and_leaves_no_partial(
    store: FileStore, root: Path
) -> None:
    write(root / partial_name("notes.txt"), b"left from before")
    with store.directories() as walks, pytest.raises(StoreError) as refused:
        receive(store, walks, "notes.txt", b"other bytes", digest=sha(b"something else"))
    assert refused.value.code == "mismatch"
    assert (root / "notes.txt").read_bytes() == b"notes"
    assert not (root / partial_name("notes.txt")).exists()


@pytest.mark.parametrize(
    ("remote", "code"),
    [
        ("", "not-a-file"),
        ("docs", "not-a-file"),
        ("nowhere/x.bin", "not-found"),
        ("notes.txt/x.bin", "not-a-directory"),
        ("outside-dir/x.bin", "bad-path"),
        ("../x.bin", "bad-path"),
    ],
)
def test_whole_uploads_that_cannot_land_are_refused_as_any_upload(
    store: FileStore, remote: str, code: str
) -> None:
    with pytest.raises(StoreError) as alone:
        store.upload(remote, 1, None, True, False)
    with store.directories() as walks, pytest.raises(StoreError) as together:
        receive(store, walks, remote, b"x")
    assert together.value.code == alone.value.code == code


def test_a_whole_upload_where_its_rights_were_not_checked_makes_nothing(
    store: FileStore, root: Path
) -> None:
    with store.directories() as walks, pytest.raises(StoreError) as refused:
        receive(store, walks, "docs-link/x.bin", b"x", where=("docs-link", "x.bin"))
    assert refused.value.code == "changed"
    assert sorted(path.name for path in (root / "docs").iterdir()) == [
        "deeper",
        "readme.md",
        "up-link",
    ]


def test_a_symlink_planted_as_a_whole_uploads_partial_is_not_followed(
    store: FileStore, root: Path
) -> None:
    secret = root.parent / "outside" / "secret.txt"
    (root / partial_name("x.bin")).symlink_to(secret)
    with store.directories() as walks:
        receive(store, walks, "x.bin", b"data")
    assert secret.read_bytes() == b"secret"
    assert (root / "x.bin").read_bytes() == b"data"


def directory_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories fsynced from now on (by their paths)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_batch_fsyncs_each_directory_renamed_into_once(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = directory_fsyncs(monkeypatch)
    with store.directories() as walks:
        for i in range(5):
            receive(store, walks, f"docs/f{i}", b"x")
            receive(store, walks, f"g{i}", b"y")
        assert synced == []  # not yet: once for all, before the replies
        assert walks.sync() == {}
    assert sorted(synced) == [str(root), str(root / "docs")]


def test_uploads_sent_together_over_the_network_land_verified(
    share: Share, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "local"
    made = {
        f"d{i % 3}/f{i:02}": write(local / f"d{i % 3}" / f"f{i:02}", os.urandom(100 + i))
        for i in range(30)
    }
    (share.root / "up").mkdir()
    synced = directory_fsyncs(monkeypatch)
    with share.connect() as client:
        client.mkdirs(["up/d0", "up/d1", "up/d2"])
        files = [(path, f"up/{name}") for name, path in made.items()]
        results = list(client.upload_many(files))
    assert [result.remote for result in results] == [remote for _, remote in files]
    for name, path in made.items():
        assert (share.root / "up" / name).read_bytes() == path.read_bytes()
        assert (share.root / "up" / name).stat().st_mtime == MTIME
    assert set(synced) >= {str(share.root / "up" / f"d{i}") for i in range(3)}
    assert len(synced) < len(made)  # once per directory per batch, not once per file


# --- a tree's downloads --------------------------------------------------------------------


def fetch(client: FilesClient, names: list[str], local: Path) -> list[TransferResult]:
    """What ``get -r`` does: the tree listed, its directories made, the files fetched."""
    files = []
    for path, entry in client.walk("tree"):
        if entry.type == "file":
            target = local / path
            target.parent.mkdir(parents=True, exist_ok=True)
            files.append((path, target, entry))
    assert sorted(path for path, _, _ in files) == sorted(f"tree/{name}" for name in names)
    return [result for result in client.download_many(files) if not result.skipped]


def test_a_tree_lands_verified_stamped_and_each_directory_is_fsynced_once(
    share: Share, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"d{i % 3}/f{i:02}" for i in range(30)]
    for i, name in enumerate(names):
        write(share.root / "tree" / name, os.urandom(200 + i), MTIME + i)
    local = tmp_path / "local"
    synced = directory_fsyncs(monkeypatch)
    with share.connect() as client:
        fetched = fetch(client, names, local)
    assert sorted(result.remote for result in fetched) == sorted(f"tree/{name}" for name in names)
    assert {result.hash for result in fetched} == {"sha256"}
    for i, name in enumerate(names):
        mine = local / "tree" / name
        assert mine.read_bytes() == (share.root / "tree" / name).read_bytes()
        assert mine.stat().st_mtime == MTIME + i
    assert sorted(synced) == sorted(str(local / "tree" / f"d{i}") for i in range(3))
    assert not [path for path in local.rglob("*") if path.name.endswith(".socketeer-part")]


def test_a_tree_resumes_partials_and_skips_what_is_up_to_date(share: Share, tmp_path: Path) -> None:
    names = [f"d{i % 2}/f{i}" for i in range(6)]
    for name in names:
        write(share.root / "tree" / name, os.urandom(5000))
    local = tmp_path / "local"
    write(local / "tree" / names[0], (share.root / "tree" / names[0]).read_bytes())
    half = (share.root / "tree" / names[1]).read_bytes()[:2000]
    mine = local / "tree" / names[1]
    write(mine.with_name(partial_name(mine.name)), half)
    with share.connect() as client:
        fetched = fetch(client, names, local)
    # The first was up to date; the second went on from its partial.
    resumed = {result.remote: result.resumed_from for result in fetched}
    assert resumed == {f"tree/{name}": 2000 if name == names[1] else 0 for name in names[1:]}
    for name in names:
        assert (local / "tree" / name).read_bytes() == (share.root / "tree" / name).read_bytes()
    assert not mine.with_name(partial_name(mine.name)).exists()


def test_replies_to_requests_sent_together_leave_in_a_few_writes(
    share: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        write(share.root / f"f{i:02}", os.urandom(100))
    writes: list[int] = []
    made = TransportStream.__init__

    def counting(stream: TransportStream, *args: Any, **kwargs: Any) -> None:
        made(stream, *args, **kwargs)
        write = stream.write

        def counted(data: bytes | bytearray | memoryview) -> None:
            writes.append(len(data))
            write(data)

        stream.write = counted

    monkeypatch.setattr(TransportStream, "__init__", counting)
    requests = b"".join(frame(Get(f"f{i:02}")) for i in range(20))
    with socket.create_connection(("127.0.0.1", share.endpoint.port), WAIT) as sock:
        sock.sendall(frame(Hello(token=TOKEN)))
        assert isinstance(receive_message(sock), Welcome)
        writes.clear()
        sock.sendall(requests)
        for i in range(20):
            header = receive_message(sock)
            assert isinstance(header, FileHeader)
            assert receive_exactly(sock, header.length) == (share.root / f"f{i:02}").read_bytes()
            assert isinstance(receive_message(sock), Done)
    # One write for each reply (20) before; the last one leaves alone, as it uncorks.
    assert len(writes) <= 3, writes


def receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


def receive_message(sock: socket.socket) -> Message:
    return decode(receive_exactly(sock, int.from_bytes(receive_exactly(sock, 4), "big")))


class ListingServer(ScriptedFilesServer):
    """A files server that answers a client's (recursive) lists with ``listings``.

    With ``pipeline``, its welcome offers pipelining (one recursive list); without,
    each ``list`` gets the next listing.
    """

    def __init__(self, listings: list[Listing], *, pipeline: int = 0) -> None:
        self.todo = list(listings)
        self.pipeline = pipeline
        super().__init__()

    def answer(self, conn: FilesConnection, request: Message) -> bytes | None:
        if isinstance(request, Hello):
            return conn.send(Welcome(server="test", hash="sha256", pipeline=self.pipeline))
        if isinstance(request, List):
            replies = self.todo if request.recursive else [self.todo.pop(0)]
            return b"".join(conn.send(listing) for listing in replies)
        return None


def entries(*names: str) -> tuple[Entry, ...]:
    return tuple(Entry(name, "file", 1, 1.0) for name in names)


@pytest.mark.parametrize("pipeline", [0, 65536], ids=["one-list-each", "recursive"])
@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "..", ".", "", "/etc/x"])
def test_a_listing_whose_names_lead_out_is_refused(name: str, pipeline: int) -> None:
    server = ListingServer([Listing("", entries("fine", name))], pipeline=pipeline)
    with (
        FilesClient.connect(server.endpoint, timeout=WAIT) as client,
        pytest.raises(FilesError) as refused,
    ):
        list(client.walk(""))
    server.join()
    assert refused.value.code == "bad-request"


@pytest.mark.parametrize("path", ["../outside", "top/../../outside", "topx/below", "elsewhere"])
def test_a_recursive_listing_of_a_directory_outside_the_top_is_refused(path: str) -> None:
    listings = [
        Listing("top", (Entry("sub", "dir", 0, 1.0),), more=True),
        Listing(path, entries("x")),
    ]
    server = ListingServer(listings, pipeline=65536)
    with (
        FilesClient.connect(server.endpoint, timeout=WAIT) as client,
        pytest.raises(FilesError) as refused,
    ):
        list(client.walk("top"))
    server.join()
    assert refused.value.code == "bad-request"


def test_get_r_from_a_server_naming_a_way_out_writes_nothing_there(tmp_path: Path) -> None:
    server = ListingServer([Listing("", entries("../escape"))], pipeline=65536)
    work = tmp_path / "work"
    work.mkdir()
    result = CliRunner().invoke(cli, ["get", "-r", "-q", server.endpoint, "", str(work / "in")])
    server.join()
    assert isinstance(result.exception, FilesError)
    assert "'../escape', which is not a name" in str(result.exception)
    assert [path.name for path in tmp_path.rglob("*")] == ["work"]  # nothing was made
