"""The shared directory against a local user who writes into it, and against hostile clients.

A local user can plant symlinks and hard links, swap a directory for a
symlink while the server looks, or leave partial files behind; a client can
ask for absurdly deep trees or names as long as the rules allow.  Each test
drives :class:`FileStore` directly, or a real server on loopback, and checks
what lands on disk and what comes back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shares import Share, sha256, write
from socketeer.services.files.client import FilesError
from socketeer.services.files.messages import Entry, Listing, decode, encode
from socketeer.services.files.paths import MAX_DEPTH, MAX_NAME_BYTES, is_partial, partial_name
from socketeer.services.files.store import FileStore, StoreError, Upload
from support import WAIT, read_line

pytestmark = pytest.mark.usefixtures("no_errors_logged")

CONTENT = b"0123456789abcdef"
SECRET = b"SECRET, outside the share\n"
INSIDE = b"inside the share\n"
#: How long, and how many times at most, a race is given to go wrong.
RACE_SECONDS, RACE_TRIES = 2.0, 500


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the share, with a file the share must never reach."""
    path = tmp_path / "outside"
    write(path / "file", SECRET)
    return path


@pytest.fixture
def store(root: Path) -> Iterator[FileStore]:
    store = FileStore(root)
    yield store
    store.close()


@pytest.fixture
def uploads() -> Iterator[list[Upload]]:
    """Uploads a test starts; abandoned at its end, as a session does."""
    started: list[Upload] = []
    yield started
    for upload in started:
        upload.abandon()


def start(store: FileStore, uploads: list[Upload], remote: str, size: int) -> Upload:
    upload = store.upload(remote, size, None, True, False)
    assert upload is not None
    uploads.append(upload)
    return upload


def code_of(action: Callable[[], object]) -> str:
    with pytest.raises(StoreError) as failed:
        action()
    return failed.value.code


def make_deep(top: Path, depth: int) -> None:
    """``top/d/.../d/leaf``: ``depth`` directories, made one at a time (no recursion)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth - 1):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = below
        os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)


def remove_deep(top: Path) -> None:
    """Remove what :func:`make_deep` made, if it is still there, without recursion.

    A deep tree left behind would break pytest's own clean-up of old
    temporary directories (``shutil.rmtree`` recurses on Python 3.11).
    """
    if not top.exists():
        return
    opened = [os.open(top, os.O_RDONLY)]
    try:
        while "d" in os.listdir(opened[-1]):
            opened.append(os.open("d", os.O_RDONLY, dir_fd=opened[-1]))
        while opened:
            fd = opened.pop()
            for name in os.listdir(fd):
                if name == "d":
                    os.rmdir(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
            os.close(fd)
    finally:
        for fd in opened:
            os.close(fd)
    top.rmdir()


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Callable[[Path, int], None]]:
    """Factory: :func:`make_deep`; whatever a test leaves of the trees is removed after it."""
    made: list[Path] = []

    def make(top: Path, depth: int) -> None:
        made.append(top)
        make_deep(top, depth)

    yield make
    for top in made:
        remove_deep(top)


# --- links planted where the partial file goes ----------------------------------------


def test_a_symlink_planted_as_the_partial_is_not_followed(
    store: FileStore, root: Path, outside: Path, uploads: list[Upload]
) -> None:
    (root / partial_name("x.bin")).symlink_to(outside / "file")
    upload = start(store, uploads, "x.bin", len(CONTENT))
    assert upload.offset == 0
    upload.write_all([CONTENT])
    upload.hash_all([CONTENT])
    upload.finish(sha256(CONTENT))
    assert (outside / "file").read_bytes() == SECRET
    assert (root / "x.bin").read_bytes() == CONTENT
    assert not (root / "x.bin").is_symlink()
    assert sorted(p.name for p in root.iterdir()) == ["x.bin"]


def test_a_hard_link_planted_as_the_partial_is_not_written_into(
    store: FileStore, root: Path, outside: Path, uploads: list[Upload]
) -> None:
    os.link(outside / "file", root / partial_name("x.bin"))
    upload = start(store, uploads, "x.bin", len(CONTENT))
    assert upload.offset == 0  # the planted bytes are not taken for a resumed upload
    upload.write_all([CONTENT])
    upload.hash_all([CONTENT])
    upload.finish(sha256(CONTENT))
    assert (outside / "file").read_bytes() == SECRET
    assert (root / "x.bin").read_bytes() == CONTENT


def test_a_directory_planted_as_the_partial_is_a_clear_error(store: FileStore, root: Path) -> None:
    (root / partial_name("x.bin")).mkdir()
    assert code_of(lambda: store.upload("x.bin", 1, None, True, False)) == "not-a-file"


def test_a_planted_partial_symlink_over_the_network(
    share: Share, outside: Path, tmp_path: Path
) -> None:
    (share.root / partial_name("x.bin")).symlink_to(outside / "file")
    data = write(tmp_path / "x.bin", os.urandom(3000))
    with share.connect() as client:
        client.upload(tmp_path / "x.bin", "x.bin")
    assert (outside / "file").read_bytes() == SECRET
    assert (share.root / "x.bin").read_bytes() == data


# --- a directory swapped for a symlink while it is looked up ---------------------------


SWAPPER = """
import os, sys, time
directory, held, link, seconds = sys.argv[1:]
print("swapping", flush=True)
deadline = time.monotonic() + float(seconds)
while time.monotonic() < deadline:
    os.rename(directory, held)
    os.rename(link, directory)
    os.rename(directory, link)
    os.rename(held, directory)
"""
#: Names below the swapped directory: a lookup that checks first and opens after
#: spends longer between the two, and is caught out more often.
DEEP = "/".join(["x"] * 40)


@contextlib.contextmanager
def swapping(directory: Path, outside: Path) -> Iterator[str]:
    """``directory`` swapped for a symlink to ``outside`` and back, by another process.

    Both hold ``DEEP/file``; yields its remote path.  Another process, not a
    thread, so that the swaps land anywhere in a lookup, not only where the
    lookup lets go of the interpreter.
    """
    write(directory / DEEP / "file", INSIDE)
    write(outside / DEEP / "file", SECRET)
    link = directory.with_name("link")
    link.symlink_to(outside, target_is_directory=True)
    names = [directory, directory.with_name("held"), link]
    with subprocess.Popen(
        [sys.executable, "-c", SWAPPER, *map(str, names), str(RACE_SECONDS + 1)],
        stdout=subprocess.PIPE,
    ) as swapper:
        assert swapper.stdout is not None
        try:
            assert read_line(swapper.stdout, time.monotonic() + WAIT) == b"swapping\n"
            yield f"{directory.name}/{DEEP}/file"
        finally:
            swapper.kill()


def race(attempt: Callable[[], bytes | None]) -> tuple[int, int]:
    """Run ``attempt`` until the race time or count is up: (inside reads, outside reads)."""
    seen = {INSIDE: 0, SECRET: 0}
    start = time.monotonic()
    tries = 0
    # The race time or count, and then on (within WAIT) until one read got through:
    # on a loaded machine every attempt of the window may meet the swap.
    while True:
        elapsed = time.monotonic() - start
        over = tries >= RACE_TRIES or elapsed > RACE_SECONDS
        if over and (seen[INSIDE] or elapsed > WAIT):
            break
        tries += 1
        got = attempt()
        if got is not None:
            seen[got] += 1
    return seen[INSIDE], seen[SECRET]


#: What a lookup may fail with while the directory is away or a symlink.
RACE_FAILURES = ("not-found", "bad-path")


def test_a_directory_swapped_for_a_symlink_never_leaks_outside_files(
    store: FileStore, root: Path, outside: Path
) -> None:
    def attempt() -> bytes | None:
        try:
            file, _ = store.open_file(remote)
        except StoreError as exc:
            if exc.code not in RACE_FAILURES:
                raise
            return None
        with file:
            return file.read()

    with swapping(root / "d", outside) as remote:
        inside, leaked = race(attempt)
    assert leaked == 0
    assert inside > 0


def test_downloads_while_a_directory_is_swapped_never_return_outside_bytes(
    share: Share, outside: Path, tmp_path: Path
) -> None:
    got = tmp_path / "got"
    with share.connect() as client, swapping(share.root / "d", outside) as remote:

        def attempt() -> bytes | None:
            try:
                client.download(remote, got, force=True, resume=False)
            except FilesError as exc:
                if exc.code not in RACE_FAILURES:
                    raise
                return None
            return got.read_bytes()

        inside, leaked = race(attempt)
    assert leaked == 0
    assert inside > 0


# --- one upload per target, across processes --------------------------------------------

HOLDER = """
import sys
from pathlib import Path
from socketeer.services.files.store import FileStore

upload = FileStore(Path(sys.argv[1])).upload("big.bin", 10, None, True, False)
upload.write_all([b"12345"])
upload.file.flush()
print("holding", flush=True)
sys.stdin.readline()
upload.abandon()
"""


def test_one_upload_per_target_holds_across_processes(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert read_line(holder.stdout, time.monotonic() + WAIT) == b"holding\n"
            assert code_of(lambda: store.upload("big.bin", 10, None, True, False)) == "busy"
            assert code_of(lambda: store.delete(partial_name("big.bin"), False)) == "busy"
            assert store.expire_partials(time.time() + 3600, 1) == 0
            holder.stdin.write(b"done\n")
            holder.stdin.flush()
            assert holder.wait(WAIT) == 0
        finally:
            holder.kill()
    upload = start(store, uploads, "big.bin", 10)
    assert upload.offset == 5  # what the other process received is resumed
    upload.write_all([b"67890"])
    upload.hash_all([b"67890"])
    upload.finish(sha256(b"1234567890"))
    assert (root / "big.bin").read_bytes() == b"1234567890"


# --- depth -----------------------------------------------------------------------------


def test_mkdir_p_of_2000_levels_is_refused_in_one_line(store: FileStore, root: Path) -> None:
    with pytest.raises(StoreError) as refused:
        store.mkdir("d/" * 2000, parents=True)
    assert refused.value.code == "bad-path"
    assert f"deeper than {MAX_DEPTH} levels" in str(refused.value)
    assert len(str(refused.value)) < 200
    assert list(root.iterdir()) == []


def test_mkdir_p_makes_up_to_the_depth_limit(store: FileStore, root: Path) -> None:
    store.mkdir("/".join(["d"] * MAX_DEPTH), parents=True)
    assert (root.joinpath(*["d"] * MAX_DEPTH)).is_dir()
    store.mkdir("/".join(["d"] * MAX_DEPTH), parents=True)  # there already: fine
    assert code_of(lambda: store.mkdir("/".join(["d"] * (MAX_DEPTH + 1)), True)) == "bad-path"
    assert not (root.joinpath(*["d"] * (MAX_DEPTH + 1))).exists()


def test_a_symlink_cannot_take_a_lookup_past_the_depth_limit(
    store: FileStore, root: Path, deep: Callable[[Path, int], None]
) -> None:
    deep(root / "deep", MAX_DEPTH + 20)
    above = "deep/" + "/".join(["d"] * 99)
    (root / above / "jump").symlink_to("/".join(["d"] * 40))
    assert store.stat(above + "/d").type == "dir"
    assert len((above + "/jump").split("/")) <= MAX_DEPTH
    assert code_of(lambda: store.stat(above + "/jump")) == "bad-path"


def test_rm_r_deletes_a_tree_2000_levels_deep(
    store: FileStore, root: Path, deep: Callable[[Path, int], None]
) -> None:
    deep(root / "deep", 2000)
    store.delete("deep", recursive=True)
    assert list(root.iterdir()) == []


def test_rm_r_does_not_follow_symlinks_out(
    store: FileStore, root: Path, outside: Path, deep: Callable[[Path, int], None]
) -> None:
    deep(root / "deep", 50)
    (root / "deep" / "out").symlink_to(outside, target_is_directory=True)
    store.delete("deep", recursive=True)
    assert list(root.iterdir()) == []
    assert (outside / "file").read_bytes() == SECRET


def test_deep_trees_over_the_network(share: Share, deep: Callable[[Path, int], None]) -> None:
    with share.connect() as client:
        with pytest.raises(FilesError) as refused:
            client.mkdir("d/" * 2000, parents=True)
        assert refused.value.code == "bad-path"
        assert client.stat("").type == "dir"  # the connection is still good
        deep(share.root / "deep", 2000)
        client.delete("deep", recursive=True)
    assert list(share.root.iterdir()) == []


# --- the longest names -----------------------------------------------------------------

LONGEST = ("é" * 127) + "x"  # 255 bytes in UTF-8


def test_every_valid_name_has_a_partial_name() -> None:
    assert len(LONGEST.encode()) == MAX_NAME_BYTES
    partial = partial_name(LONGEST)
    assert is_partial(partial)
    assert len(partial.encode()) <= MAX_NAME_BYTES
    assert partial == partial_name(LONGEST)  # the same one each time: uploads resume
    assert partial != partial_name(LONGEST[:-1] + "y")
    assert partial_name("short.txt") == ".short.txt.socketeer-part"  # readable while it fits


def test_a_255_byte_name_is_uploaded_and_resumed(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    first = start(store, uploads, LONGEST, len(CONTENT))
    first.write_all([CONTENT[:6]])
    first.abandon()
    assert [e.type for e in store.list("")] == ["partial"]
    second = start(store, uploads, LONGEST, len(CONTENT))
    assert second.offset == 6
    second.write_all([CONTENT[6:]])
    second.hash_all([CONTENT[6:]])
    second.finish(sha256(CONTENT))
    assert (root / LONGEST).read_bytes() == CONTENT
    assert [p.name for p in root.iterdir()] == [LONGEST]


def test_a_255_byte_name_both_ways_over_the_network(share: Share, tmp_path: Path) -> None:
    data = write(tmp_path / "source", os.urandom(5000))
    back = tmp_path / "back"
    back.mkdir()
    with share.connect() as client:
        client.upload(tmp_path / "source", LONGEST)
        client.download(LONGEST, back / LONGEST)
    assert (share.root / LONGEST).read_bytes() == data
    assert (back / LONGEST).read_bytes() == data
    assert [p.name for p in back.iterdir()] == [LONGEST]


# --- partial files: seen, deleted, expired ---------------------------------------------


def test_partials_are_listed_apart_so_older_clients_never_see_them() -> None:
    listing = Listing("", (Entry("a", "file", 1, 0.0), Entry(partial_name("b"), "partial", 2, 0.0)))
    assert listing.entries == (Entry("a", "file", 1, 0.0),)
    assert listing.partials == (Entry(partial_name("b"), "partial", 2, 0.0),)
    wire = json.loads(encode(listing))
    assert [e["name"] for e in wire["entries"]] == ["a"]
    assert decode(encode(listing)) == listing


def test_partials_over_the_network(share: Share, tmp_path: Path) -> None:
    write(share.root / partial_name("big.iso"), b"half")
    write(share.root / "notes.txt", b"notes")
    with share.connect() as client:
        assert [e.name for e in client.list("")] == ["notes.txt"]
        assert [(e.name, e.type, e.size) for e in client.list("", partials=True)] == [
            (partial_name("big.iso"), "partial", 4),
            ("notes.txt", "file", 5),
        ]
        with pytest.raises(FilesError) as refused:
            client.download(partial_name("big.iso"), tmp_path / "x")
        assert refused.value.code == "bad-path"
        client.delete(partial_name("big.iso"))
        assert [e.name for e in client.list("", partials=True)] == ["notes.txt"]
    write(share.root / partial_name("big.iso"), b"half")
    with share.connect(token=None) as reader:
        with pytest.raises(FilesError) as refused:
            reader.delete(partial_name("big.iso"))
        assert refused.value.code == "unauthorized"
    assert (share.root / partial_name("big.iso")).exists()


def test_a_partial_being_received_cannot_be_deleted(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    upload = start(store, uploads, "x.bin", 4)
    upload.write_all([b"ab"])
    assert code_of(lambda: store.delete(partial_name("x.bin"), False)) == "busy"
    upload.abandon()
    store.delete(partial_name("x.bin"), False)
    assert list(root.iterdir()) == []


def aged(path: Path, data: bytes, mtime: float) -> Path:
    write(path, data, mtime)
    return path


def test_expire_partials_deletes_only_old_unheld_partials(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    now = 1_700_000_000.0
    old, fresh = now - 7200, now - 60
    gone = [
        aged(root / partial_name("old.bin"), b"x", old),
        aged(root / "a" / "b" / partial_name("deep.bin"), b"x", old),
        aged(root / partial_name(LONGEST), b"x", old),
    ]
    kept = [
        aged(root / partial_name("fresh.bin"), b"x", fresh),
        aged(root / "old.bin", b"a file, not a partial", old),
        aged(root / "held.bin", b"x", old),
    ]
    held = start(store, uploads, "held.bin", 10)
    os.utime(held.partial, (old, old))
    kept.append(held.partial)
    (root / "a" / partial_name("link.bin")).symlink_to(root / "old.bin")
    kept.append(root / "a" / partial_name("link.bin"))

    assert store.expire_partials(now, 0) == 0  # 0: never
    assert all(path.exists() for path in gone)
    assert store.expire_partials(now, 3600) == len(gone)
    assert not any(path.exists() for path in gone)
    assert all(path.is_symlink() or path.exists() for path in kept)


def test_expire_partials_reaches_deep_partials(
    store: FileStore, root: Path, deep: Callable[[Path, int], None]
) -> None:
    deep(root / "deep", 300)
    aged(root.joinpath("deep", *["d"] * 299, partial_name("x")), b"x", 0.0)
    assert store.expire_partials(time.time(), 60) == 1


def test_the_partial_name_hashes_the_name_bytes() -> None:
    name = "\udce9" * MAX_NAME_BYTES  # undecodable bytes, as names from disk arrive
    digest = hashlib.sha256(b"\xe9" * MAX_NAME_BYTES).hexdigest()
    assert partial_name(name) == f".{digest}.socketeer-part"
