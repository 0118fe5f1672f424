"""Accounts on the files service, over loopback: each right allowed and denied."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shares import Share, snapshot, write
from socketeer import ServerConfig
from socketeer.accounts import Accounts, parse_users
from socketeer.passwords import hash_password
from socketeer.services.files import FilesService
from socketeer.services.files.access import Access
from socketeer.services.files.client import FilesClient, FilesError
from socketeer.services.files.store import FileStore, StoreError
from socketeer.throttle import AuthThrottle
from support import WAIT, ThreadedServer, recv_all

pytestmark = pytest.mark.usefixtures("no_errors_logged")

#: Cheap hashes (N = 2**10): the tests check many passwords.
CHEAP = 10
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


def users_file() -> str:
    alice, bob, carol = (hash_password(PASSWORDS[name], log_n=CHEAP) for name in PASSWORDS)
    return f"""
[anonymous]
"/public" = "read"

[users.alice]
password = "{alice}"
"/alice" = "read write delete"
"/alice/keep" = "read"

[users.bob]
password = "{bob}"
"/inbox" = "write"

[users.carol]
password = "{carol}"
"/" = "read write"
"""


@pytest.fixture
def accounts() -> Accounts:
    return parse_users(users_file())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    write(root / "public" / "readme.txt", b"hello\n")
    write(root / "alice" / "notes.txt", b"alice's notes\n")
    write(root / "alice" / "keep" / "kept.txt", b"kept\n")
    write(root / "alice2" / "other.txt", b"not alice's\n")
    write(root / "bob" / "secret.txt", b"bob's secret\n")
    write(root / "top.txt", b"top\n")
    (root / "inbox").mkdir()
    return root


@pytest.fixture
def served(tree: Path, accounts: Accounts) -> Iterator[Share]:
    throttle = AuthThrottle(first_delay=0.01, max_delay=0.02, max_failures=4)
    service = FilesService(
        tree,
        allow_upload=True,
        token="admin-token",
        partial_ttl=0,
        throttle=throttle,
        accounts=accounts,
    )
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (bound,) = threaded.start()
    share = Share(tree, bound, threaded, service)
    yield share
    share.stop()


def login(share: Share, user: str | None = None, password: str | None = None) -> FilesClient:
    if user is not None and password is None:
        password = PASSWORDS[user]
    return FilesClient.connect(share.endpoint, user=user, password=password, timeout=WAIT)


def refused(code: str, call: object, *args: object) -> FilesError:
    assert callable(call)
    with pytest.raises(FilesError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value
    return caught.value


def upload(client: FilesClient, tmp_path: Path, remote: str, data: bytes = b"new\n") -> None:
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    client.upload(local, remote)


# logging in ------------------------------------------------------------------------------


def test_the_welcome_names_the_account(served: Share) -> None:
    with login(served, "alice") as client:
        assert client.user == "alice"
        assert client.writable
    with login(served) as client:
        assert client.user is None
        assert not client.writable


def test_a_look_alike_name_logs_in_to_the_account_it_looks_like(served: Share) -> None:
    with login(served, "ALICE", PASSWORDS["alice"]) as client:
        assert client.user == "alice"


def test_a_wrong_password_is_refused_and_logged_at_warning(
    served: Share, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    error = refused("unauthorized", login, served, "alice", "wrong")
    assert "wrong user name or password" in str(error)
    refused("unauthorized", login, served, "nobody", "wrong")
    shown = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.message]
    assert len(shown) == 2
    assert 'user "alice"' in shown[0].message


def test_a_user_name_with_control_characters_is_escaped_in_the_log(
    served: Share, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    refused("unauthorized", login, served, "\x1b[2Jmallory", "x")
    assert any("\\x1b[2Jmallory" in r.message for r in caplog.records)
    assert not any("\x1b" in r.message for r in caplog.records)


def test_wrong_passwords_are_throttled_then_banned(served: Share) -> None:
    for _ in range(4):
        refused("unauthorized", login, served, "alice", "wrong")
    error = refused("banned", login, served, "alice")  # even the right password now
    assert "too many failed logins" in str(error)


def test_wrong_passwords_are_answered_late(tree: Path, accounts: Accounts) -> None:
    throttle = AuthThrottle(first_delay=0.3, max_delay=0.3)
    service = FilesService(tree, partial_ttl=0, throttle=throttle, accounts=accounts)
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (bound,) = threaded.start()
    try:
        start = time.monotonic()
        with pytest.raises(FilesError):
            FilesClient.connect(bound, user="alice", password="wrong", timeout=WAIT)
        assert time.monotonic() - start >= 0.3
    finally:
        threaded.stop()


def test_a_user_on_a_server_without_accounts_is_refused(tree: Path) -> None:
    service = FilesService(tree, partial_ttl=0)
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (bound,) = threaded.start()
    try:
        with pytest.raises(FilesError) as caught:
            FilesClient.connect(bound, user="alice", password="x", timeout=WAIT)
        assert caught.value.code == "unauthorized"
        assert "no accounts" in str(caught.value)
    finally:
        threaded.stop()


def test_an_old_client_without_user_reads_what_anyone_may(served: Share) -> None:
    with FilesClient.connect(served.endpoint, timeout=WAIT) as client:
        assert [e.name for e in client.list("public")] == ["readme.txt"]
        refused("unauthorized", client.list, "alice")


def test_the_token_still_allows_everything(served: Share, tmp_path: Path) -> None:
    with FilesClient.connect(served.endpoint, token="admin-token", timeout=WAIT) as client:
        assert client.writable
        assert client.list("bob")
        upload(client, tmp_path, "bob/from-admin.txt")
    assert (served.root / "bob" / "from-admin.txt").read_bytes() == b"new\n"


# read --------------------------------------------------------------------------------------


def test_anonymous_reads_public_and_nothing_else(served: Share, tmp_path: Path) -> None:
    with login(served) as client:
        assert [e.name for e in client.list("")] == ["public"]  # the way to its rights
        assert client.stat("public").type == "dir"
        client.download("public/readme.txt", tmp_path / "readme.txt")
        assert (tmp_path / "readme.txt").read_bytes() == b"hello\n"
        refused("unauthorized", client.download, "top.txt", tmp_path / "top.txt")
        refused("unauthorized", client.stat, "top.txt")
        refused("unauthorized", client.list, "bob")
        refused("unauthorized", upload, client, tmp_path, "public/new.txt")
        refused("unauthorized", client.mkdir, "public/d")
        refused("unauthorized", client.delete, "public/readme.txt")
    assert not (tmp_path / "top.txt").exists()


def test_read_right_allows_list_stat_get_and_nothing_more(served: Share, tmp_path: Path) -> None:
    before = snapshot(served.root)
    with login(served, "alice") as client:
        assert [e.name for e in client.list("alice/keep")] == ["kept.txt"]
        client.download("alice/keep/kept.txt", tmp_path / "kept.txt")
        assert [e.name for e in client.list("public")] == ["readme.txt"]  # anyone's too
        refused("forbidden", upload, client, tmp_path, "alice/keep/new.txt")
        refused("forbidden", client.mkdir, "alice/keep/d")
        refused("forbidden", client.delete, "alice/keep/kept.txt")
    assert snapshot(served.root) == before


def test_read_write_delete_allows_each(served: Share, tmp_path: Path) -> None:
    with login(served, "alice") as client:
        upload(client, tmp_path, "alice/new.txt")
        client.mkdir("alice/made")
        upload(client, tmp_path, "alice/notes.txt", b"replaced\n")  # replace: write + delete
        client.delete("alice/new.txt")
        client.delete("alice/made")
    assert (served.root / "alice" / "notes.txt").read_bytes() == b"replaced\n"
    assert not (served.root / "alice" / "new.txt").exists()
    assert not (served.root / "alice" / "made").exists()


def test_write_without_delete_makes_but_does_not_replace_or_delete(
    served: Share, tmp_path: Path
) -> None:
    with login(served, "carol") as client:
        upload(client, tmp_path, "bob/for-bob.txt")
        client.mkdir("bob/dir")
        refused("forbidden", upload, client, tmp_path, "bob/secret.txt", b"overwritten\n")
        refused("forbidden", client.delete, "bob/for-bob.txt")
    assert (served.root / "bob" / "secret.txt").read_bytes() == b"bob's secret\n"
    assert (served.root / "bob" / "for-bob.txt").exists()


def test_upload_only_puts_but_cannot_list_or_get(served: Share, tmp_path: Path) -> None:
    with login(served, "bob") as client:
        assert client.stat("inbox").type == "dir"  # so `put FILE EP inbox` finds it
        upload(client, tmp_path, "inbox/report.txt", b"report\n")
        refused("forbidden", client.list, "inbox")
        refused("forbidden", client.download, "inbox/report.txt", tmp_path / "got.txt")
        refused("forbidden", client.stat, "inbox/report.txt")
        refused("forbidden", upload, client, tmp_path, "inbox/report.txt", b"again\n")
        refused("forbidden", client.delete, "inbox/report.txt")
        refused("forbidden", client.list, "bob")
    assert (served.root / "inbox" / "report.txt").read_bytes() == b"report\n"
    assert not (tmp_path / "got.txt").exists()


def test_a_recursive_delete_needs_the_right_everywhere_below(served: Share) -> None:
    before = snapshot(served.root)
    with login(served, "alice") as client:
        error = refused("forbidden", client.delete, "alice", True)
        assert "everything below" in str(error)
    assert snapshot(served.root) == before


# paths that look like others -------------------------------------------------------------


def test_a_prefix_is_whole_names(served: Share, tmp_path: Path) -> None:
    with login(served, "alice") as client:
        refused("forbidden", client.list, "alice2")
        refused("forbidden", client.download, "alice2/other.txt", tmp_path / "x")
        refused("forbidden", upload, client, tmp_path, "alice2/new.txt")
    assert not (served.root / "alice2" / "new.txt").exists()


def test_dot_dot_cannot_reach_another_path(served: Share, tmp_path: Path) -> None:
    with login(served, "alice") as client:
        refused("bad-path", client.list, "alice/../bob")
        refused("bad-path", client.download, "alice/../bob/secret.txt", tmp_path / "x")
        refused("bad-path", client.delete, "alice/../bob/secret.txt")
    assert (served.root / "bob" / "secret.txt").exists()


def test_a_symlink_inside_alice_into_bob_gives_bob_s_rights(served: Share, tmp_path: Path) -> None:
    os.symlink("../bob", served.root / "alice" / "to-bob")
    os.symlink(served.root / "bob" / "secret.txt", served.root / "alice" / "secret-link")
    with login(served, "alice") as client:
        refused("forbidden", client.list, "alice/to-bob")
        refused("forbidden", client.download, "alice/to-bob/secret.txt", tmp_path / "x")
        refused("forbidden", client.download, "alice/secret-link", tmp_path / "y")
        refused("forbidden", upload, client, tmp_path, "alice/to-bob/planted.txt")
        refused("forbidden", client.delete, "alice/to-bob/secret.txt")
        refused("forbidden", client.mkdir, "alice/to-bob/new", True)
        client.delete("alice/secret-link")  # the link itself is alice's
    assert (served.root / "bob" / "secret.txt").read_bytes() == b"bob's secret\n"
    assert not (served.root / "bob" / "planted.txt").exists()
    assert not (served.root / "bob" / "new").exists()
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()


def test_another_case_cannot_borrow_a_wider_rule(tree: Path) -> None:
    """``/ARCHIVE`` is not ``/archive`` on this file system: it gets the root's rights,
    and ``/archive``'s narrower rule still holds where ``ARCHIVE`` is missing."""
    hashed = hash_password("pw", log_n=CHEAP)
    accounts = parse_users(
        f'[users.dave]\npassword = "{hashed}"\n"/" = "read write delete"\n"/archive" = "read"\n'
    )
    (tree / "archive").mkdir()
    write(tree / "archive" / "old.txt", b"old\n")
    service = FilesService(tree, partial_ttl=0, accounts=accounts)
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (bound,) = threaded.start()
    try:
        with FilesClient.connect(bound, user="dave", password="pw", timeout=WAIT) as client:
            refused("forbidden", client.delete, "archive/old.txt")
            # ARCHIVE does not exist: making it could make /archive where the file
            # system folds case, so only what both rules allow holds.
            refused("forbidden", client.mkdir, "ARCHIVE")
            client.mkdir("elsewhere")
    finally:
        threaded.stop()
    assert (tree / "archive" / "old.txt").exists()
    assert not (tree / "ARCHIVE").exists()


def test_a_refused_upload_writes_nothing_not_even_a_partial(served: Share, tmp_path: Path) -> None:
    before = snapshot(served.root)
    with login(served, "bob") as client:
        refused("forbidden", upload, client, tmp_path, "bob/x.txt", b"x" * 100_000)
        assert client.stat("inbox").type == "dir"  # the connection goes on
    assert snapshot(served.root) == before


def test_the_service_keeps_checking_passwords_in_threads(served: Share) -> None:
    """Ten logins at once all get answered (the checks are bounded, not refused)."""

    async def many() -> list[str | None]:
        def one() -> str | None:
            with login(served, "alice") as client:
                return client.user

        return await asyncio.gather(*(asyncio.to_thread(one) for _ in range(10)))

    assert asyncio.run(many()) == ["alice"] * 10


def test_plain_downloads_get_only_what_anyone_may_read(served: Share) -> None:
    def plain(name: str) -> bytes:
        with socket.create_connection((served.endpoint.host, served.endpoint.port), WAIT) as sock:
            sock.sendall(name.encode() + b"\n")
            return recv_all(sock)

    assert plain("public/readme.txt") == b"hello\n"
    refusal = plain("alice/notes.txt")
    assert refusal.startswith(b"error: ")
    assert b"anonymous users may not read" in refusal
    assert b"alice's notes" not in refusal


# trees and requests sent ahead -------------------------------------------------------------


def test_a_recursive_listing_shows_only_what_the_account_may_list(served: Share) -> None:
    with login(served, "alice") as client:
        assert client.pipelining
        seen = sorted(path for path, _ in client.tree(""))
        assert seen == [
            "alice",
            "alice/keep",
            "alice/keep/kept.txt",
            "alice/notes.txt",
            "public",
            "public/readme.txt",
        ]
    with login(served) as client:
        assert sorted(path for path, _ in client.tree("")) == ["public", "public/readme.txt"]
        refused("unauthorized", lambda: list(client.tree("bob")))


def test_uploads_sent_ahead_get_each_its_own_answer_by_the_rights(
    served: Share, tmp_path: Path
) -> None:
    write(tmp_path / "mine.txt", b"mine.txt")
    write(tmp_path / "not-mine.txt", b"not-mine.txt")
    with login(served, "alice") as client:
        sent = [(tmp_path / "mine.txt", "alice/mine.txt"), (tmp_path / "not-mine.txt", "bob/x")]
        results = client.upload_many(sent[:1])
        assert [r.skipped for r in results] == [False]
        refused("forbidden", lambda: list(client.upload_many(sent[1:])))
        assert [e.name for e in client.list("alice/keep")] == ["kept.txt"]  # still usable
    assert (served.root / "alice" / "mine.txt").read_bytes() == b"mine.txt"
    assert not (served.root / "bob" / "x").exists()


def swapped_first(
    monkeypatch: pytest.MonkeyPatch, store: FileStore, step: str, swap: Callable[[], None]
) -> None:
    """Make the store's ``step`` run ``swap`` (a local user's move) just before it acts."""
    original = getattr(store, step)

    def swapped(*args: Any, **options: Any) -> Any:
        swap()
        return original(*args, **options)

    monkeypatch.setattr(store, step, swapped)


def to_bob(way: Path) -> Callable[[], None]:
    """A local user swapping ``way`` (checked) for a link into /bob."""

    def swap() -> None:
        if way.is_dir():
            shutil.rmtree(way)
            way.symlink_to("../bob")
        else:
            way.unlink()
            way.symlink_to("../bob/secret.txt")

    return swap


def refused_as_changed(call: Callable[..., object], *args: object) -> None:
    with pytest.raises(StoreError) as caught:
        call(*args)
    assert caught.value.code == "changed"


def test_a_file_swapped_for_a_link_after_the_check_is_not_read(
    tree: Path, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    race = tree / "alice" / "race"
    race.write_bytes(b"harmless\n")
    store = FileStore(tree)
    swapped_first(monkeypatch, store, "open_file", to_bob(race))
    access = Access(store, accounts, accounts.find("alice"))
    refused_as_changed(access.open_file, "alice/race")


def test_a_directory_swapped_for_a_link_after_the_check_gets_no_small_upload_stored_whole(
    tree: Path, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    way = tree / "alice" / "dir"
    way.mkdir()
    store = FileStore(tree)
    swapped_first(monkeypatch, store, "receive_whole", to_bob(way))
    access = Access(store, accounts, accounts.find("alice"))
    with store.directories() as walks, pytest.raises(StoreError) as caught:
        access.receive_whole("alice/dir/planted.txt", b"data", None, None, walks=walks)
    assert caught.value.code == "changed"
    assert sorted(path.name for path in (tree / "bob").iterdir()) == ["secret.txt"]


def test_a_directory_swapped_for_a_link_after_the_check_loses_nothing(
    tree: Path, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    way = tree / "alice" / "dir"
    way.mkdir()
    (way / "secret.txt").write_bytes(b"alice's copy\n")
    store = FileStore(tree)
    swapped_first(monkeypatch, store, "delete", to_bob(way))
    swapped_first(monkeypatch, store, "mkdir", to_bob(way))
    access = Access(store, accounts, accounts.find("alice"))
    refused_as_changed(access.delete, "alice/dir/secret.txt", False)
    assert (tree / "bob" / "secret.txt").read_bytes() == b"bob's secret\n"
    way.unlink()
    way.mkdir()
    refused_as_changed(access.mkdir, "alice/dir/made", False)
    assert sorted(path.name for path in (tree / "bob").iterdir()) == ["secret.txt"]


@pytest.mark.parametrize(
    ("step", "act"),
    [
        ("upload", lambda access: access.upload("alice/dir/planted.txt", 4, None, False, True)),
        ("list", lambda access: access.list("alice/dir")),
    ],
)
def test_a_directory_swapped_for_a_link_after_the_check_is_neither_written_nor_listed(
    tree: Path,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    act: Callable[[Access], object],
) -> None:
    way = tree / "alice" / "dir"
    way.mkdir()
    store = FileStore(tree)
    swapped_first(monkeypatch, store, step, to_bob(way))
    refused_as_changed(act, Access(store, accounts, accounts.find("alice")))
    assert sorted(path.name for path in (tree / "bob").iterdir()) == ["secret.txt"]


def test_a_directory_swapped_for_a_link_while_a_tree_is_read_shows_nothing_of_it(
    tree: Path, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    way = tree / "alice" / "dir"
    way.mkdir()
    (way / "mine.txt").write_bytes(b"mine\n")
    store = FileStore(tree)
    opening = store._open

    def swapped_while_opened(remote: str, flags: int) -> tuple[int, tuple[str, ...]]:
        # A local user swaps the directory for a link into /bob just as it is opened,
        # and back before anyone looks again.
        if remote != "alice/dir":
            return opening(remote, flags)
        hidden = tree / "alice" / "hidden"
        way.rename(hidden)
        way.symlink_to("../bob")
        try:
            return opening(remote, flags)
        finally:
            way.unlink()
            hidden.rename(way)

    monkeypatch.setattr(store, "_open", swapped_while_opened)
    access = Access(store, accounts, accounts.find("alice"))
    shown = {path: [entry.name for entry in entries] for path, entries in access.tree("alice")}
    assert "secret.txt" not in {name for names in shown.values() for name in names}
    assert shown["alice"] == ["dir", "keep", "notes.txt"]
    refused_as_changed(lambda: list(access.tree("alice/dir")))  # the top itself: refused
