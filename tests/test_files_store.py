"""The shared directory on disk: confinement, listings, uploads that are safe to interrupt."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from socketeer.services.files.messages import Entry
from socketeer.services.files.paths import partial_name
from socketeer.services.files.store import FileStore, HashCache, StoreError, Upload, hash_file

MTIME = 1_600_000_000.0
CONTENT = b"0123456789abcdef"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes, mtime: float = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The shared directory, with a file, a directory and symlinks both ways."""
    root = tmp_path / "share"
    write(root / "notes.txt", b"notes")
    write(root / "docs" / "readme.md", b"# readme")
    outside = tmp_path / "outside"
    write(outside / "secret.txt", b"secret")
    (root / "inside-link").symlink_to("notes.txt")
    (root / "docs-link").symlink_to("docs", target_is_directory=True)
    (root / "secret-link").symlink_to(outside / "secret.txt")
    (root / "outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "escape").symlink_to("../outside/secret.txt")
    return root


@pytest.fixture
def store(root: Path) -> FileStore:
    return FileStore(root)


@pytest.fixture
def uploads(store: FileStore) -> Iterator[list[Upload]]:
    """Uploads a test starts; closed and released at its end, as a session does."""
    started: list[Upload] = []
    yield started
    for upload in started:
        upload.abandon()
        store.release(upload.target)


def start(
    store: FileStore,
    uploads: list[Upload],
    remote: str,
    size: int,
    mtime: float | None = MTIME,
    *,
    verify: bool = True,
    force: bool = False,
) -> Upload:
    upload = store.upload(remote, size, mtime, verify, force)
    assert upload is not None
    uploads.append(upload)
    return upload


def receive(upload: Upload, *chunks: bytes) -> None:
    upload.write_all(list(chunks))
    upload.hash_all(list(chunks))


def code_of(error: pytest.ExceptionInfo[StoreError]) -> str:
    return error.value.code


# --------------------------------------------------------------- the store itself


def test_the_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        FileStore(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        FileStore(write(tmp_path / "file", b""))


def test_the_root_is_held_as_its_real_path(tmp_path: Path, root: Path) -> None:
    (tmp_path / "share-link").symlink_to(root, target_is_directory=True)
    store = FileStore(tmp_path / "share-link")
    assert store.root == root.resolve()
    assert store.stat("notes.txt").size == 5


# ----------------------------------------------------------------- confinement


@pytest.mark.parametrize(
    ("remote", "relative"),
    [
        pytest.param("", ".", id="root"),
        pytest.param(".", ".", id="dot"),
        pytest.param("notes.txt", "notes.txt", id="file"),
        pytest.param("./docs//readme.md", "docs/readme.md", id="untidy"),
        pytest.param("inside-link", "notes.txt", id="symlink-inside"),
        pytest.param("docs-link/readme.md", "docs/readme.md", id="through-symlinked-dir"),
    ],
)
def test_a_path_inside_finds_what_is_there(
    store: FileStore, root: Path, remote: str, relative: str
) -> None:
    real = (root / relative).resolve()
    st = real.stat()
    name = "" if real == root else real.name
    assert store.stat(remote) == Entry(
        name, "dir" if real.is_dir() else "file", st.st_size, st.st_mtime
    )


def test_a_path_not_there_yet_is_not_found(store: FileStore) -> None:
    with pytest.raises(StoreError) as missing:
        store.stat("not/yet/there")
    assert code_of(missing) == "not-found"


@pytest.mark.parametrize(
    "remote",
    [
        pytest.param("../outside/secret.txt", id="dotdot"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("secret-link", id="symlink-to-outside-file"),
        pytest.param("escape", id="relative-symlink-to-outside"),
        pytest.param("outside-dir", id="symlink-to-outside-dir"),
        pytest.param("outside-dir/secret.txt", id="through-symlink-to-outside-dir"),
        pytest.param("outside-dir/new.txt", id="new-name-through-symlink"),
        pytest.param(partial_name("notes.txt"), id="partial"),
    ],
)
def test_paths_that_lead_outside_are_refused(store: FileStore, remote: str) -> None:
    with pytest.raises(StoreError) as refused:
        store.stat(remote)
    assert code_of(refused) == "bad-path"


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda s: s.stat("secret-link"), id="stat"),
        pytest.param(lambda s: s.open_file("secret-link"), id="open"),
        pytest.param(lambda s: s.open_file("escape"), id="open-relative-link"),
        pytest.param(lambda s: s.list("outside-dir"), id="list-dir-link"),
        pytest.param(lambda s: s.stat("outside-dir/secret.txt"), id="stat-through"),
        pytest.param(lambda s: s.upload("secret-link", 1, None, True, False), id="upload-link"),
        pytest.param(
            lambda s: s.upload("outside-dir/x", 1, None, True, False), id="upload-through"
        ),
        pytest.param(lambda s: s.mkdir("outside-dir/new", False), id="mkdir-through"),
        pytest.param(lambda s: s.delete("outside-dir/secret.txt", False), id="delete-through"),
    ],
)
def test_nothing_outside_is_reached_through_a_symlink(
    store: FileStore, tmp_path: Path, use: Callable[[FileStore], object]
) -> None:
    with pytest.raises(StoreError) as refused:
        use(store)
    assert code_of(refused) == "bad-path"
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["secret.txt"]
    assert (tmp_path / "outside" / "secret.txt").read_bytes() == b"secret"


def test_a_symlink_inside_is_followed(store: FileStore) -> None:
    assert store.stat("inside-link") == Entry("notes.txt", "file", 5, MTIME)
    file, st = store.open_file("inside-link")
    with file:
        assert file.read() == b"notes"
    assert st.st_size == 5
    assert [e.name for e in store.list("docs-link")] == ["readme.md"]


def test_a_dangling_symlink_is_not_found(store: FileStore, root: Path) -> None:
    (root / "dangling").symlink_to("nowhere")
    with pytest.raises(StoreError) as missing:
        store.stat("dangling")
    assert code_of(missing) == "not-found"
    with pytest.raises(StoreError) as missing:
        store.open_file("dangling")
    assert code_of(missing) == "not-found"


# -------------------------------------------------------------------- listing


def test_a_listing_is_sorted_and_describes_each_entry(store: FileStore, root: Path) -> None:
    write(root / "b.bin", b"bb", mtime=MTIME + 1)
    write(root / "A.txt", b"A")
    (root / "empty").mkdir()
    entries = {e.name: e for e in store.list("")}
    assert list(entries) == sorted(entries)
    assert entries["b.bin"] == Entry("b.bin", "file", 2, MTIME + 1)
    assert entries["notes.txt"] == Entry("notes.txt", "file", 5, MTIME)
    assert entries["empty"].type == "dir"
    assert entries["docs"].type == "dir"
    # A symlink inside is listed as what it points to.
    assert entries["inside-link"] == Entry("inside-link", "file", 5, MTIME)
    assert entries["docs-link"].type == "dir"


def test_a_listing_marks_partial_files(store: FileStore, root: Path) -> None:
    write(root / partial_name("big.iso"), b"half")
    write(root / "docs" / partial_name("readme.md"), b"#")
    assert Entry(partial_name("big.iso"), "partial", 4, MTIME) in store.list("")
    assert [(e.name, e.type) for e in store.list("docs")] == [
        (partial_name("readme.md"), "partial"),
        ("readme.md", "file"),
    ]


def test_symlinks_leading_outside_or_nowhere_are_listed_as_links(
    store: FileStore, root: Path
) -> None:
    (root / "dangling").symlink_to("nowhere")
    (root / "dangling-outside").symlink_to("/nonexistent/socketeer/x")
    entries = {e.name: e for e in store.list("")}
    for name in ("secret-link", "outside-dir", "escape", "dangling", "dangling-outside"):
        assert entries[name].type == "link", name
        assert entries[name].size == 0, name
    assert entries["inside-link"].type == "file"


def test_stat_describes_the_root_and_what_is_under_it(store: FileStore) -> None:
    assert store.stat("").name == ""
    assert store.stat("").type == "dir"
    assert store.stat(".") == store.stat("")
    assert store.stat("docs").type == "dir"
    assert store.stat("docs").name == "docs"
    assert store.stat("docs/readme.md") == Entry("readme.md", "file", 8, MTIME)


@pytest.mark.parametrize(
    ("use", "code"),
    [
        pytest.param(lambda s: s.stat("missing"), "not-found", id="stat-missing"),
        pytest.param(lambda s: s.list("missing"), "not-found", id="list-missing"),
        pytest.param(lambda s: s.open_file("missing"), "not-found", id="open-missing"),
        pytest.param(lambda s: s.list("notes.txt"), "not-a-directory", id="list-a-file"),
        pytest.param(lambda s: s.stat("notes.txt/x"), "not-a-directory", id="through-a-file"),
        pytest.param(lambda s: s.open_file("docs"), "not-a-file", id="open-a-dir"),
        pytest.param(lambda s: s.open_file(""), "not-a-file", id="open-the-root"),
        pytest.param(lambda s: s.stat("a\\b"), "bad-path", id="bad-path"),
    ],
)
def test_failures_have_stable_codes(
    store: FileStore, use: Callable[[FileStore], object], code: str
) -> None:
    with pytest.raises(StoreError) as failed:
        use(store)
    assert code_of(failed) == code


def test_a_fifo_is_listed_as_other_and_refused_without_waiting_for_a_writer(
    store: FileStore, root: Path
) -> None:
    os.mkfifo(root / "pipe")
    assert store.stat("pipe").type == "other"
    assert {e.name: e.type for e in store.list("")}["pipe"] == "other"
    with pytest.raises(StoreError) as refused:
        store.open_file("pipe")  # a blocking open would hang here until the timeout
    assert code_of(refused) == "not-a-file"


def test_a_failure_names_the_remote_path(store: FileStore, root: Path) -> None:
    with pytest.raises(StoreError) as failed:
        store.stat("docs/missing.txt")
    assert str(failed.value).startswith("docs/missing.txt: ")
    assert str(root) not in str(failed.value)  # the server's layout stays private


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads and lists everything, whatever the permissions"
)
def test_permission_denied(store: FileStore, root: Path) -> None:
    locked = root / "locked"
    write(locked / "inside.txt", b"x")
    write(root / "unreadable.txt", b"x")
    (root / "unreadable.txt").chmod(0)
    locked.chmod(0)
    try:
        with pytest.raises(StoreError) as denied:
            store.list("locked")
        assert code_of(denied) == "denied"
        with pytest.raises(StoreError) as denied:
            store.open_file("unreadable.txt")
        assert code_of(denied) == "denied"
    finally:
        locked.chmod(0o755)


# -------------------------------------------------------------------- uploads


def test_a_fresh_upload_lands_under_its_name_with_its_mtime(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    upload = start(store, uploads, "docs/new.bin", len(CONTENT), MTIME + 5)
    assert upload.offset == 0
    assert upload.partial == root / "docs" / partial_name("new.bin")
    receive(upload, CONTENT[:7], CONTENT[7:])
    assert not (root / "docs" / "new.bin").exists()  # nothing under the real name yet
    assert [e.type for e in store.list("docs")] == ["partial", "file"]

    upload.finish(sha(CONTENT))
    target = root / "docs" / "new.bin"
    assert target.read_bytes() == CONTENT
    assert target.stat().st_mtime == MTIME + 5
    assert not upload.partial.exists()
    assert [e.name for e in store.list("docs")] == ["new.bin", "readme.md"]


def test_an_upload_without_mtime_or_verification(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    upload = start(store, uploads, "plain.txt", 3, None, verify=False)
    receive(upload, b"abc")
    upload.finish(None)
    assert (root / "plain.txt").read_bytes() == b"abc"


def test_a_finished_upload_replaces_the_target_atomically(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    upload = start(store, uploads, "notes.txt", len(CONTENT), MTIME + 9)
    receive(upload, CONTENT)
    with (root / "notes.txt").open("rb") as reader:  # a download under way
        assert (root / "notes.txt").read_bytes() == b"notes"
        upload.finish(sha(CONTENT).upper())
        assert reader.read() == b"notes"  # it keeps the whole old file
    assert (root / "notes.txt").read_bytes() == CONTENT
    assert store.stat("notes.txt") == Entry("notes.txt", "file", len(CONTENT), MTIME + 9)
    assert not upload.partial.exists()


def test_an_upload_resumes_from_the_partial(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    first = start(store, uploads, "big.bin", len(CONTENT))
    receive(first, CONTENT[:6])
    first.abandon()  # the connection dropped
    store.release(first.target)
    assert first.partial.read_bytes() == CONTENT[:6]

    second = start(store, uploads, "big.bin", len(CONTENT))
    assert second.offset == 6
    receive(second, CONTENT[6:])
    second.finish(sha(CONTENT))  # the hash covers the bytes from both connections
    assert (root / "big.bin").read_bytes() == CONTENT
    assert not second.partial.exists()


def test_a_resumed_partial_with_wrong_bytes_fails_the_whole_file_hash(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    write(root / partial_name("big.bin"), b"XXXXXX")
    upload = start(store, uploads, "big.bin", len(CONTENT))
    assert upload.offset == 6
    receive(upload, CONTENT[6:])
    with pytest.raises(StoreError) as failed:
        upload.finish(sha(CONTENT))
    assert code_of(failed) == "mismatch"
    assert not upload.partial.exists()  # the next attempt starts afresh
    assert not (root / "big.bin").exists()


def test_a_partial_larger_than_the_file_starts_over(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    write(root / partial_name("small.bin"), b"far too many bytes")
    upload = start(store, uploads, "small.bin", 4)
    assert upload.offset == 0
    assert upload.partial.stat().st_size == 0
    receive(upload, b"four")
    upload.finish(sha(b"four"))
    assert (root / "small.bin").read_bytes() == b"four"


def test_a_mismatch_removes_the_partial_and_keeps_the_target(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    before = (root / "notes.txt").stat()
    upload = start(store, uploads, "notes.txt", len(CONTENT), MTIME + 1)
    receive(upload, CONTENT)
    with pytest.raises(StoreError, match="mismatch") as failed:
        upload.finish(sha(b"something else"))
    assert code_of(failed) == "mismatch"
    assert not upload.partial.exists()
    after = (root / "notes.txt").stat()
    assert (root / "notes.txt").read_bytes() == b"notes"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_short_upload_is_not_finished_and_keeps_its_partial(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    upload = start(store, uploads, "short.bin", len(CONTENT))
    receive(upload, CONTENT[:3])
    with pytest.raises(StoreError) as failed:
        upload.finish(sha(CONTENT))
    assert code_of(failed) == "bad-request"
    assert upload.partial.read_bytes() == CONTENT[:3]
    assert not (root / "short.bin").exists()


def test_an_abandoned_upload_keeps_its_partial(
    store: FileStore, root: Path, uploads: list[Upload]
) -> None:
    upload = start(store, uploads, "big.bin", len(CONTENT))
    receive(upload, CONTENT[:4])
    upload.abandon()
    upload.abandon()  # twice is harmless
    assert upload.partial.read_bytes() == CONTENT[:4]
    assert not (root / "big.bin").exists()


def test_a_second_upload_of_the_same_target_is_busy(
    store: FileStore, uploads: list[Upload]
) -> None:
    first = start(store, uploads, "docs/x.bin", 4)
    for remote in ("docs/x.bin", "./docs//x.bin", "docs-link/x.bin"):
        with pytest.raises(StoreError) as busy:
            store.upload(remote, 4, None, True, False)
        assert code_of(busy) == "busy", remote
    other = start(store, uploads, "docs/y.bin", 4)  # another file is not affected
    assert other.offset == 0

    receive(first, b"ab")
    first.abandon()
    store.release(first.target)
    again = start(store, uploads, "docs/x.bin", 4)
    assert again.offset == 2


def test_the_same_file_is_skipped_unless_forced(store: FileStore, uploads: list[Upload]) -> None:
    assert store.upload("notes.txt", 5, MTIME, True, False) is None
    assert store.upload("inside-link", 5, MTIME, True, False) is None
    for size, mtime in ((5, MTIME + 1), (6, MTIME), (5, None)):
        upload = start(store, uploads, "notes.txt", size, mtime)
        upload.abandon()
        store.release(upload.target)
    forced = start(store, uploads, "notes.txt", 5, MTIME, force=True)
    assert forced.offset == 0


@pytest.mark.parametrize(
    ("remote", "code"),
    [
        pytest.param("", "not-a-file", id="the-root"),
        pytest.param("docs", "not-a-file", id="a-directory"),
        pytest.param("docs-link", "not-a-file", id="a-directory-link"),
        pytest.param("nowhere/x.bin", "not-found", id="missing-directory"),
        pytest.param("notes.txt/x.bin", "not-a-directory", id="under-a-file"),
        pytest.param(partial_name("x.bin"), "bad-path", id="a-partial"),
        pytest.param("../x.bin", "bad-path", id="outside"),
    ],
)
def test_uploads_that_cannot_start(store: FileStore, root: Path, remote: str, code: str) -> None:
    with pytest.raises(StoreError) as refused:
        store.upload(remote, 1, None, True, False)
    assert code_of(refused) == code
    assert not list(root.rglob("*.socketeer-part"))


# ----------------------------------------------------------- mkdir and delete


def test_mkdir(store: FileStore, root: Path) -> None:
    store.mkdir("new", parents=False)
    assert (root / "new").is_dir()
    with pytest.raises(StoreError) as exists:
        store.mkdir("new", parents=False)
    assert code_of(exists) == "exists"
    with pytest.raises(StoreError) as missing:
        store.mkdir("a/b/c", parents=False)
    assert code_of(missing) == "not-found"
    store.mkdir("a/b/c", parents=True)
    assert (root / "a" / "b" / "c").is_dir()
    store.mkdir("a/b/c", parents=True)  # already there: fine
    with pytest.raises(StoreError) as exists:
        store.mkdir("notes.txt", parents=True)
    assert code_of(exists) == "exists"


def test_delete_a_file_and_an_empty_directory(store: FileStore, root: Path) -> None:
    store.delete("notes.txt", recursive=False)
    assert not (root / "notes.txt").exists()
    (root / "empty").mkdir()
    store.delete("empty", recursive=False)
    assert not (root / "empty").exists()
    with pytest.raises(StoreError) as missing:
        store.delete("empty", recursive=False)
    assert code_of(missing) == "not-found"


def test_a_directory_with_contents_is_deleted_only_recursively(
    store: FileStore, root: Path
) -> None:
    write(root / "docs" / "sub" / "deep.txt", b"deep")
    with pytest.raises(StoreError) as not_empty:
        store.delete("docs", recursive=False)
    assert code_of(not_empty) == "not-empty"
    assert (root / "docs" / "readme.md").exists()
    store.delete("docs", recursive=True)
    assert not (root / "docs").exists()


@pytest.mark.parametrize("remote", ["", ".", "./"])
def test_the_shared_directory_itself_cannot_be_deleted(
    store: FileStore, root: Path, remote: str
) -> None:
    with pytest.raises(StoreError) as denied:
        store.delete(remote, recursive=True)
    assert code_of(denied) == "denied"
    assert (root / "notes.txt").exists()


def test_deleting_a_symlink_deletes_the_link_not_its_target(store: FileStore, root: Path) -> None:
    store.delete("inside-link", recursive=False)
    assert not (root / "inside-link").is_symlink()
    assert (root / "notes.txt").read_bytes() == b"notes"
    store.delete("docs-link", recursive=True)
    assert not (root / "docs-link").is_symlink()
    assert (root / "docs" / "readme.md").read_bytes() == b"# readme"


# ----------------------------------------------------------------- hashing


def test_hash_file_hashes_the_whole_file_or_a_prefix(tmp_path: Path) -> None:
    data = bytes(range(256)) * 12_345  # more than one read of a MiB
    with write(tmp_path / "f", data).open("rb") as file:
        assert hash_file(file) == sha(data)
        assert hash_file(file, 1000) == sha(data[:1000])
        assert hash_file(file, 0) == sha(b"")
        assert hash_file(file, len(data) + 100) == sha(data)
        hasher = hashlib.sha256(b"prefix")
        assert hash_file(file, 10, hasher) == sha(b"prefix" + data[:10])


def test_the_store_remembers_hashes_per_version_of_a_file(store: FileStore, root: Path) -> None:
    file, st = store.open_file("notes.txt")
    with file:
        assert store.sha256(file, st) == sha(b"notes")
    assert store.hashes.get(st) == sha(b"notes")

    # Rewritten in place, same size, new mtime: a new version, hashed again.
    write(root / "notes.txt", b"NOTES", mtime=MTIME + 1)
    file, st2 = store.open_file("notes.txt")
    with file:
        assert st2.st_ino == st.st_ino
        assert store.hashes.get(st2) is None
        assert store.sha256(file, st2) == sha(b"NOTES")


def test_a_remembered_hash_is_not_recomputed(store: FileStore) -> None:
    file, st = store.open_file("notes.txt")
    store.hashes.put(st, "remembered")
    with file:
        assert store.sha256(file, st) == "remembered"


def test_the_hash_cache_forgets_the_least_recently_used(tmp_path: Path) -> None:
    cache = HashCache(capacity=2)
    stats = [os.stat(write(tmp_path / f"f{i}", b"x" * i)) for i in range(3)]
    cache.put(stats[0], "zero")
    cache.put(stats[1], "one")
    assert cache.get(stats[0]) == "zero"  # now the most recently used
    cache.put(stats[2], "two")
    assert cache.get(stats[1]) is None
    assert cache.get(stats[0]) == "zero"
    assert cache.get(stats[2]) == "two"


def test_a_64_hex_name_never_shares_a_partial_with_the_long_name_it_hashes() -> None:
    from socketeer.services.files.paths import partial_name

    long_name = "x" * 250
    digest = hashlib.sha256(long_name.encode()).hexdigest()
    assert partial_name(long_name) != partial_name(digest)
    assert partial_name("notes.txt") == ".notes.txt.socketeer-part"
