"""Accounts over HTTP, on the files port: curl over loopback sees each right allowed and denied."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shares import Share, snapshot, write
from socketeer import ServerConfig
from socketeer.accounts import parse_users
from socketeer.passwords import PasswordHash, hash_password
from socketeer.services.files import FilesService
from socketeer.services.files.client import FilesClient
from socketeer.throttle import AuthThrottle
from support import WAIT, ThreadedServer

pytestmark = pytest.mark.usefixtures("no_errors_logged")

if shutil.which("curl") is None:
    pytest.skip("curl is not installed", allow_module_level=True)

#: Cheap hashes (N = 2**10): the tests check many passwords.
CHEAP = 10
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
ADMIN = "admin-token"
CHALLENGE = 'www-authenticate: basic realm="socketeer"'


def users_file() -> str:
    alice, bob = (hash_password(PASSWORDS[name], log_n=CHEAP) for name in PASSWORDS)
    return f"""
[anonymous]
"/public" = "read"

[users.alice]
password = "{alice}"
"/alice" = "read write"
"/alice/trash" = "read write delete"

[users.bob]
password = "{bob}"
"/inbox" = "write"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Share]:
    root = tmp_path / "share"
    write(root / "public" / "readme.txt", b"hello\n")
    write(root / "alice" / "notes.txt", b"alice's notes\n")
    write(root / "alice" / "trash" / "old.txt", b"old\n")
    write(root / "bob" / "secret.txt", b"bob's secret\n")
    write(root / "top.txt", b"top\n")
    (root / "inbox").mkdir()
    throttle = AuthThrottle(first_delay=0.01, max_delay=0.02, max_failures=4)
    service = FilesService(
        root,
        allow_upload=True,
        token=ADMIN,
        partial_ttl=0,
        throttle=throttle,
        accounts=parse_users(users_file()),
    )
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (bound,) = threaded.start()
    share = Share(root, bound, threaded, service)
    yield share
    share.stop()


def url(share: Share, path: str = "/") -> str:
    return f"http://{share.endpoint.host}:{share.endpoint.port}{path}"


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--path-as-is", "--max-time", str(WAIT), *args],
        capture_output=True,
        timeout=WAIT + 5,
        check=False,
    )


def status(*args: str) -> int:
    return int(curl("-o", os.devnull, "-w", "%{http_code}", *args).stdout)


def answer(*args: str) -> tuple[int, str, bytes]:
    """The status, the head (lower case) and the body of one request."""
    result = curl("-i", *args)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    code = int(head.split(b"\r\n")[0].split()[1])
    return code, head.decode("latin-1").lower(), body


def as_user(name: str, password: str | None = None) -> list[str]:
    return ["-u", f"{name}:{PASSWORDS[name] if password is None else password}"]


def upload_file(tmp_path: Path, data: bytes = b"new\n") -> str:
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    return str(local)


def zip_names(body: bytes) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return set(archive.namelist())


def test_anonymous_requests_read_only_what_anyone_may(served: Share) -> None:
    code, head, body = answer(url(served, "/alice/notes.txt"))
    assert code == 401
    assert CHALLENGE in head
    assert b"alice's notes" not in body
    assert status(url(served, "/public/readme.txt")) == 200
    assert curl(url(served, "/public/readme.txt")).stdout == b"hello\n"
    assert status("-I", url(served, "/bob/secret.txt")) == 401
    assert status(url(served, "/top.txt")) == 401
    assert status(url(served, "/alice/")) == 401
    assert status(url(served, "/alice/?json")) == 401
    assert status(url(served, "/alice/?zip")) == 401
    assert status(url(served, "/alice/missing.txt")) == 401  # nor whether it exists


def test_alice_reads_and_writes_her_directory_with_basic_auth(
    served: Share, tmp_path: Path
) -> None:
    alice = as_user("alice")
    assert curl(*alice, url(served, "/alice/notes.txt")).stdout == b"alice's notes\n"
    local = upload_file(tmp_path, b"from alice\n")
    assert status(*alice, "-T", local, url(served, "/alice/y.txt")) == 201
    assert (served.root / "alice" / "y.txt").read_bytes() == b"from alice\n"
    assert status(*alice, "-T", local, url(served, "/alice/new/deep.txt")) == 201
    chunk = [*alice, "-T", local, url(served, "/alice/r.bin?offset=0&size=11")]
    assert status(*chunk) == 201  # a resumable upload's one chunk
    assert status(*alice, "-X", "PUT", url(served, "/alice/made/")) == 201
    assert (served.root / "alice" / "made").is_dir()
    assert status(*alice, "-T", local, url(served, "/alice/y.txt")) == 403  # replacing: delete
    assert status(*alice, "-X", "DELETE", url(served, "/alice/notes.txt")) == 403
    assert status(*alice, "-d", "", url(served, "/alice/notes.txt?delete")) == 403
    assert (served.root / "alice" / "notes.txt").exists()
    assert status(*alice, "-X", "DELETE", url(served, "/alice/trash/old.txt")) == 204
    assert not (served.root / "alice" / "trash" / "old.txt").exists()
    code, head, body = answer(*alice, url(served, "/bob/secret.txt"))
    assert code == 403  # logged in, without the right: no new challenge
    assert "www-authenticate" not in head
    assert b"bob's secret" not in body
    assert status(*alice, "-T", local, url(served, "/public/x.txt")) == 403
    assert status(*alice, "-T", local, url(served, "/bob/x.txt")) == 403
    assert not (served.root / "public" / "x.txt").exists()
    assert not (served.root / "bob" / "x.txt").exists()


def test_bob_uploads_into_the_inbox_but_cannot_read_it(served: Share, tmp_path: Path) -> None:
    bob = as_user("bob")
    local = upload_file(tmp_path, b"for the inbox\n")
    assert status(*bob, "-T", local, url(served, "/inbox/z.txt")) == 201
    assert (served.root / "inbox" / "z.txt").read_bytes() == b"for the inbox\n"
    code, _, body = answer(*bob, url(served, "/inbox/z.txt"))
    assert code == 403
    assert b"for the inbox" not in body
    assert status(*bob, url(served, "/inbox/")) == 403
    assert status(*bob, url(served, "/inbox/?json")) == 403
    assert status(*bob, url(served, "/inbox/?zip")) == 403
    other = upload_file(tmp_path, b"overwritten\n")
    assert status(*bob, "-T", other, url(served, "/inbox/z.txt")) == 403  # no replacing
    assert (served.root / "inbox" / "z.txt").read_bytes() == b"for the inbox\n"
    form = ["-H", "Accept: application/json", "-F", f"file=@{local};filename=m.txt"]
    assert status(*bob, *form, url(served, "/inbox/?upload")) == 200
    assert (served.root / "inbox" / "m.txt").exists()
    before = snapshot(served.root)
    assert status("-T", local, url(served, "/inbox/anon.txt")) == 401
    assert status(*form, url(served, "/inbox/?upload")) == 401
    assert status("-d", "name=d", url(served, "/inbox/?mkdir")) == 401
    assert status("-X", "DELETE", url(served, "/inbox/z.txt")) == 401
    assert status(*bob, "-X", "DELETE", url(served, "/inbox/z.txt")) == 403
    assert snapshot(served.root) == before


def test_a_zip_holds_only_files_the_account_may_read(served: Share) -> None:
    code, _, body = answer(url(served, "/?zip"))
    assert code == 200
    assert zip_names(body) == {"share/public/", "share/public/readme.txt"}
    code, _, body = answer(*as_user("alice"), url(served, "/?zip"))
    assert code == 200
    assert zip_names(body) == {
        "share/public/",
        "share/public/readme.txt",
        "share/alice/",
        "share/alice/notes.txt",
        "share/alice/trash/",
        "share/alice/trash/old.txt",
    }


def test_listings_show_what_the_files_protocol_shows(served: Share) -> None:
    with FilesClient.connect(served.endpoint, timeout=WAIT) as client:
        anonymous = sorted(entry.name for entry in client.list(""))
    assert anonymous == ["public"]
    listing = json.loads(curl(url(served, "/?json")).stdout)
    assert sorted(entry["name"] for entry in listing["entries"]) == anonymous
    page = curl(url(served, "/")).stdout
    assert b'href="/public/"' in page
    for hidden in (b"/alice", b"/bob", b"/top.txt", b"/inbox"):
        assert hidden not in page
    assert b'name="user"' in page  # the login form asks for an account
    mine = json.loads(curl(*as_user("alice"), url(served, "/?json")).stdout)
    assert sorted(entry["name"] for entry in mine["entries"]) == ["alice", "public"]
    assert b"upload-form" in curl(*as_user("alice"), url(served, "/alice/")).stdout
    assert b"upload-form" not in curl(*as_user("alice"), url(served, "/public/")).stdout


def test_wrong_passwords_are_slowed_logged_and_banned(
    served: Share, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    target = url(served, "/alice/notes.txt")
    code, head, body = answer(*as_user("alice", "wrong"), target)
    assert (code, CHALLENGE in head) == (401, True)
    assert b"alice's notes" not in body
    assert status("-u", "nobody\x1b[31m:wrong", target) == 401
    assert status(*as_user("alice", "wrong"), target) == 401
    assert status(*as_user("alice", "wrong"), target) == 401  # the fourth: banned
    code, _, body = answer(*as_user("alice"), target)
    assert code == 403  # even with the right password
    assert b"too many failed logins" in body
    assert status(url(served, "/public/readme.txt")) == 200  # anonymous reads go on
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("wrong user name or password" in line for line in warned) == 4
    assert any('user "alice"' in line for line in warned)
    assert any("nobody\\x1b[31m" in line for line in warned)  # escaped, never raw
    assert not any("\x1b" in line for line in warned)


def test_paths_and_links_cannot_borrow_another_path_s_rights(served: Share, tmp_path: Path) -> None:
    (served.root / "alice" / "to-secret").symlink_to(served.root / "bob" / "secret.txt")
    (served.root / "alice" / "to-bob").symlink_to(served.root / "bob")
    alice = as_user("alice")
    for path in (
        "/alice/../bob/secret.txt",
        "/alice/%2e%2e/bob/secret.txt",
        "/alice/%2E%2E%2fbob%2fsecret.txt",
    ):
        code, _, body = answer(*alice, url(served, path))
        assert 400 <= code < 500, path
        assert b"bob's secret" not in body
    for path in ("/alice/to-secret", "/alice/to-bob/secret.txt", "/alice/to-bob/"):
        code, _, body = answer(*alice, url(served, path))
        assert code == 403, path
        assert b"bob's secret" not in body
    local = upload_file(tmp_path)
    assert status(*alice, "-T", local, url(served, "/alice/to-bob/planted.txt")) == 403
    assert status(*alice, "-X", "PUT", url(served, "/alice/to-bob/made/")) == 403
    assert not (served.root / "bob" / "planted.txt").exists()
    assert not (served.root / "bob" / "made").exists()
    code, _, body = answer(*alice, url(served, "/alice/?zip"))
    assert code == 200
    assert not any("secret" in name for name in zip_names(body))


def test_the_login_form_takes_an_account(served: Share, tmp_path: Path) -> None:
    jar = str(tmp_path / "jar")
    login = url(served, "/.socketeer/login")
    assert status("-c", jar, "-d", "user=alice&password=wrong", login) == 401
    assert status("-c", jar, "-d", f"user=alice&password={PASSWORDS['alice']}", login) == 303
    assert curl("-b", jar, url(served, "/alice/notes.txt")).stdout == b"alice's notes\n"
    assert status("-b", jar, url(served, "/bob/secret.txt")) == 403
    assert b"logged in as alice" in curl("-b", jar, url(served, "/")).stdout
    mkdir = ["-b", jar, "-d", "name=made", url(served, "/alice/?mkdir")]
    assert status(*mkdir) == 403  # no Origin: a cross-site form cannot make this
    origin = url(served).rstrip("/")
    assert status("-H", f"Origin: {origin}", *mkdir) == 303
    assert (served.root / "alice" / "made").is_dir()
    assert (
        status("-H", f"Origin: {origin}", "-b", jar, "-X", "DELETE", url(served, "/alice/made"))
        == 403
    )


def test_basic_writes_from_another_site_are_refused(served: Share) -> None:
    evil = ["-H", "Origin: http://evil.example", *as_user("alice")]
    assert status(*evil, "-d", "name=x", url(served, "/alice/?mkdir")) == 403
    assert not (served.root / "alice" / "x").exists()


def test_the_token_still_allows_everything(served: Share, tmp_path: Path) -> None:
    admin = ["-H", f"Authorization: Bearer {ADMIN}"]
    assert curl(*admin, url(served, "/bob/secret.txt")).stdout == b"bob's secret\n"
    assert status(*admin, "-T", upload_file(tmp_path), url(served, "/bob/new.txt")) == 201
    assert status(*admin, "-X", "DELETE", url(served, "/top.txt")) == 204
    assert status("-H", "Authorization: Bearer wrong", url(served, "/public/readme.txt")) == 401


def test_a_directory_swapped_for_a_link_after_the_check_is_not_listed(
    served: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    way = served.root / "alice" / "dir"
    store = served.service.store
    reading = store._list

    def swapped_first(remote: str, *args: Any) -> Any:
        # A local user swaps the checked directory for a link into /bob just before it is read.
        if remote == "alice/dir" and not way.is_symlink():
            way.rmdir()
            way.symlink_to("../bob")
        return reading(remote, *args)

    monkeypatch.setattr(store, "_list", swapped_first)
    for query in ("", "?json", "?zip"):
        if way.is_symlink():
            way.unlink()
        way.mkdir()
        code, _, body = answer(*as_user("alice"), url(served, f"/alice/dir/{query}"))
        assert code == 409, query
        assert b"secret" not in body


def test_basic_credentials_sent_with_every_request_cost_one_password_check(
    served: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    matches = PasswordHash.matches

    def counted(self: PasswordHash, password: str) -> bool:
        checked.append(password)
        return matches(self, password)

    monkeypatch.setattr(PasswordHash, "matches", counted)
    notes = url(served, "/alice/notes.txt")
    for _ in range(5):
        assert curl(*as_user("alice"), notes).stdout == b"alice's notes\n"
    assert len(checked) == 1
    for _ in range(2):  # a wrong password is never taken as known
        assert status(*as_user("alice", "wrong"), notes) == 401
    assert len(checked) == 3
    assert status(*as_user("alice"), notes) == 200
    assert len(checked) == 3
    served.service.use_accounts(parse_users(users_file()))  # the users file read again
    assert status(*as_user("alice"), notes) == 200
    assert len(checked) == 4
