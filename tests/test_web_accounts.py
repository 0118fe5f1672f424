"""Accounts on the files service's HTTP side: each request reads through its rights."""

from __future__ import annotations

import base64
import io
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shares import Share, write
from socketeer import ServerConfig
from socketeer.accounts import parse_users
from socketeer.services.files import FilesService
from socketeer.throttle import AuthThrottle
from support import WAIT, ThreadedServer, recv_all
from test_files_accounts import PASSWORDS, users_file

pytestmark = pytest.mark.usefixtures("no_errors_logged")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Share]:
    root = tmp_path / "share"
    write(root / "public" / "readme.txt", b"hello\n")
    write(root / "alice" / "notes.txt", b"alice's notes\n")
    write(root / "bob" / "secret.txt", b"bob's secret\n")
    write(root / "top.txt", b"top\n")
    service = FilesService(
        root,
        allow_upload=True,
        token="admin-token",
        partial_ttl=0,
        throttle=AuthThrottle(first_delay=0.01, max_delay=0.02, max_failures=50),
        accounts=parse_users(users_file()),
    )
    threaded = ThreadedServer(service, ["127.0.0.1:0"], ServerConfig(idle_timeout=None))
    (bound,) = threaded.start()
    share = Share(root, bound, threaded, service)
    yield share
    share.stop()


def get(share: Share, path: str, *headers: str) -> tuple[int, bytes, bytes]:
    """Status, head and body of one ``GET`` (closed after it)."""
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    request += "".join(f"{header}\r\n" for header in headers) + "\r\n"
    with socket.create_connection((share.endpoint.host, share.endpoint.port), WAIT) as sock:
        sock.sendall(request.encode())
        answer = recv_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def basic(user: str, password: str | None = None) -> str:
    pair = f"{user}:{PASSWORDS[user] if password is None else password}"
    return "Authorization: Basic " + base64.b64encode(pair.encode()).decode()


def zipped(body: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(body)).namelist())


def test_anonymous_http_reads_only_what_anyone_may(served: Share) -> None:
    assert get(served, "/public/readme.txt")[2] == b"hello\n"
    for path in ("/bob/secret.txt", "/alice/notes.txt", "/top.txt", "/bob/", "/bob/?json"):
        status, head, body = get(served, path)
        assert status == 401, (path, head)
        assert b"bob's secret" not in body
        assert b"alice's notes" not in body
        assert b"www-authenticate: Basic" in head
    status, _, body = get(served, "/")
    assert status == 200
    assert b"public" in body
    assert b"bob" not in body
    assert b"top.txt" not in body
    status, _, body = get(served, "/?zip")
    assert status == 200
    assert zipped(body) == ["share/public/", "share/public/readme.txt"]


def test_a_user_reads_over_http_only_where_the_account_may(served: Share) -> None:
    alice = basic("alice")
    assert get(served, "/alice/notes.txt", alice)[2] == b"alice's notes\n"
    assert get(served, "/bob/secret.txt", alice)[0] == 403
    assert get(served, "/bob/?zip", alice)[0] == 403
    status, _, body = get(served, "/?zip", alice)
    assert status == 200
    assert "share/bob/secret.txt" not in zipped(body)
    assert "share/alice/notes.txt" in zipped(body)


def test_a_wrong_password_over_http_is_refused(served: Share) -> None:
    status, head, body = get(served, "/public/readme.txt", basic("alice", "wrong"))
    assert status == 401
    assert b"hello" not in body
    assert b"www-authenticate: Basic" in head


def test_the_token_reads_everything_over_http(served: Share) -> None:
    token = "Authorization: Bearer admin-token"
    assert get(served, "/bob/secret.txt", token)[2] == b"bob's secret\n"
