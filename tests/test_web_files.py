"""The files service over HTTP, on the files port, as curl, wget and raw sockets see it."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from shares import TOKEN, ServeShare, Share, write
from socketeer import ServerConfig
from socketeer.services.files import FilesService
from support import WAIT, ThreadedServer, recv_all

pytestmark = pytest.mark.usefixtures("no_errors_logged")

for _tool in ("curl", "wget"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} is not installed", allow_module_level=True)


def url(share: Share, path: str = "/") -> str:
    return f"http://{share.endpoint.host}:{share.endpoint.port}{path}"


def curl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(WAIT), *args],
        capture_output=True,
        timeout=WAIT + 5,
        check=False,
        cwd=cwd,
    )


def status(*args: str) -> int:
    result = curl("-o", os.devnull, "-w", "%{http_code}", *args)
    return int(result.stdout)


def exchange(share: Share, request: bytes, *, shut: bool = True) -> bytes:
    """Send raw bytes on one connection; everything the server said until it closed."""
    with socket.create_connection((share.endpoint.host, share.endpoint.port), WAIT) as sock:
        sock.sendall(request)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def test_a_directory_is_a_page_and_json(share: Share) -> None:
    write(share.root / "a.txt", b"hello")
    write(share.root / "sub" / "b.txt", b"bee")
    page = curl("-i", url(share))
    head, _, body = page.stdout.partition(b"\r\n\r\n")
    assert b"200 OK" in head
    assert b"content-security-policy: default-src 'none'" in head.lower()
    assert b"x-content-type-options: nosniff" in head.lower()
    assert b'href="/a.txt"' in body
    assert b'href="/sub/"' in body
    listing = json.loads(curl(url(share, "/?json")).stdout)
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("a.txt", "file"),
        ("sub", "dir"),
    ]
    accept = json.loads(curl("-H", "Accept: application/json", url(share, "/sub/")).stdout)
    assert accept["entries"][0]["name"] == "b.txt"
    redirect = curl("-i", url(share, "/sub"))
    assert b"301" in redirect.stdout.split(b"\r\n")[0]
    assert b"location: /sub/" in redirect.stdout.lower()


def test_listings_sort_by_size(share: Share) -> None:
    write(share.root / "small", b"1")
    write(share.root / "large", b"1" * 100)
    page = curl(url(share, "/?sort=size&order=desc")).stdout
    assert page.index(b'href="/large"') < page.index(b'href="/small"')


def test_downloads_with_validators_ranges_and_head(share: Share) -> None:
    data = write(share.root / "f.bin", os.urandom(10_000))
    head = curl("-I", url(share, "/f.bin")).stdout.decode().lower()
    assert "content-length: 10000" in head
    assert "content-type: application/octet-stream" in head
    assert "etag: " in head
    assert "last-modified: " in head
    assert "accept-ranges: bytes" in head
    assert "sandbox" in head  # a shared file never runs as the server's pages
    assert curl(url(share, "/f.bin")).stdout == data
    assert curl("-r", "100-199", url(share, "/f.bin")).stdout == data[100:200]
    assert status("-r", "100-199", url(share, "/f.bin")) == 206
    assert status("-r", "20000-", url(share, "/f.bin")) == 416
    etag = next(line for line in head.splitlines() if line.startswith("etag:")).split(" ", 1)[1]
    assert status("-H", f"If-None-Match: {etag.strip()}", url(share, "/f.bin")) == 304
    assert status("-H", 'If-Range: "other"', "-r", "0-9", url(share, "/f.bin")) == 200
    assert status(url(share, "/missing")) == 404


def test_curl_and_wget_resume(share: Share, tmp_path: Path) -> None:
    data = write(share.root / "big.bin", os.urandom(3_000_000))
    (tmp_path / "c.bin").write_bytes(data[:1_234_567])
    result = curl("-C", "-", "-o", "c.bin", url(share, "/big.bin"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c.bin").read_bytes() == data
    (tmp_path / "w.bin").write_bytes(data[:777])
    subprocess.run(
        ["wget", "-q", "-c", "-O", "w.bin", url(share, "/big.bin")],
        cwd=tmp_path,
        timeout=WAIT,
        check=True,
    )
    assert (tmp_path / "w.bin").read_bytes() == data


def test_html_from_the_share_is_downloaded_not_shown(share: Share) -> None:
    write(share.root / "page.html", b"<script>alert(1)</script>")
    head = curl("-I", url(share, "/page.html")).stdout.decode().lower()
    assert "content-disposition: attachment" in head
    assert "sandbox" in head


def test_a_directory_as_a_streamed_zip(share: Share) -> None:
    write(share.root / "d" / "one.txt", b"one")
    write(share.root / "d" / "deep" / "two.bin", b"\x00" * 70_000)
    result = curl("-i", url(share, "/d/?zip"))
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("d/one.txt") == b"one"
        assert archive.read("d/deep/two.bin") == b"\x00" * 70_000


def test_put_needs_the_token_and_writes_nothing_without_it(share: Share, tmp_path: Path) -> None:
    source = write(tmp_path / "up.bin", os.urandom(50_000))
    target = url(share, "/new/up.bin")
    assert status("-T", str(tmp_path / "up.bin"), target) == 401
    assert status("-T", str(tmp_path / "up.bin"), "-H", "Authorization: Bearer no", target) == 401
    assert not (share.root / "new").exists()
    good = ["-H", f"Authorization: Bearer {TOKEN}"]
    assert status("-T", str(tmp_path / "up.bin"), *good, target) == 201
    assert (share.root / "new" / "up.bin").read_bytes() == source
    assert not [p for p in (share.root / "new").iterdir() if p.name.startswith(".")]


def test_a_read_only_server_refuses_writes(serve_share: ServeShare, tmp_path: Path) -> None:
    share = serve_share(allow_upload=False, token=None)
    write(tmp_path / "x", b"x")
    auth = ["-H", f"Authorization: Bearer {TOKEN}"]
    assert status("-T", str(tmp_path / "x"), *auth, url(share, "/x")) == 403
    assert status("-X", "DELETE", *auth, url(share, "/x")) == 403
    assert not (share.root / "x").exists()


def test_resumable_chunks_land_only_when_complete(share: Share, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    write(tmp_path / "c1", data[:100_000])
    write(tmp_path / "c2", data[100_000:])
    auth = ["-H", f"Authorization: Bearer {TOKEN}"]
    first = curl("-T", str(tmp_path / "c1"), *auth, url(share, "/r.bin?offset=0&size=300000&fresh"))
    assert json.loads(first.stdout) == {"offset": 100_000}
    assert not (share.root / "r.bin").exists()  # never half-visible
    again = curl("-i", "-T", str(tmp_path / "c1"), *auth, url(share, "/r.bin?offset=0&size=300000"))
    assert b" 409 " in again.stdout.split(b"\r\n")[0]
    assert b"upload-offset: 100000" in again.stdout.lower()
    last = ["-T", str(tmp_path / "c2"), *auth, url(share, "/r.bin?offset=100000&size=300000")]
    assert status(*last) == 201
    assert (share.root / "r.bin").read_bytes() == data


def test_multipart_upload_mkdir_and_delete(share: Share, tmp_path: Path) -> None:
    data = write(tmp_path / "m.bin", os.urandom(200_000))
    auth = ["-H", f"Authorization: Bearer {TOKEN}", "-H", "Accept: application/json"]
    sent = curl(
        *auth,
        "-F",
        f"file=@{tmp_path / 'm.bin'}",
        "-F",
        f"file=@{tmp_path / 'm.bin'};filename=folder/inner.bin",
        url(share, "/?upload"),
    )
    assert json.loads(sent.stdout) == {"received": ["m.bin", "folder/inner.bin"]}
    assert (share.root / "m.bin").read_bytes() == data
    assert (share.root / "folder" / "inner.bin").read_bytes() == data
    assert status(*auth, "-d", "name=made", url(share, "/folder/?mkdir")) == 200
    assert (share.root / "folder" / "made").is_dir()
    assert status(*auth, "-X", "DELETE", url(share, "/folder")) == 204
    assert not (share.root / "folder").exists()


def test_login_cookie_writes_only_from_the_same_origin(share: Share, tmp_path: Path) -> None:
    jar = str(tmp_path / "jar")
    origin = url(share).rstrip("/")
    assert status("-c", jar, "-d", "token=wrong", url(share, "/.socketeer/login")) == 401
    login = curl("-i", "-c", jar, "-d", f"token={TOKEN}", url(share, "/.socketeer/login"))
    cookie = next(
        line for line in login.stdout.decode().splitlines() if line.lower().startswith("set-cookie")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    form = ["-b", jar, "-d", "name=x", url(share, "/?mkdir")]
    assert status(*form) == 403  # no Origin: a cross-site form cannot make this
    assert status("-H", "Origin: http://evil.example", *form) == 403
    assert not (share.root / "x").exists()
    assert status("-H", f"Origin: {origin}", *form) == 303
    assert (share.root / "x").is_dir()


@pytest.mark.parametrize(
    "path",
    [
        "/..",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fsecret",
        "/%5c..%5csecret",
        "//etc/passwd",
        "/%c0%ae%c0%ae/secret",
        "/a%00b",
    ],
)
def test_path_tricks_get_4xx_and_nothing_outside(share: Share, path: str) -> None:
    write(share.root.parent / "secret", b"top secret")
    result = curl("--path-as-is", "-i", url(share, path))
    line = result.stdout.split(b"\r\n")[0]
    assert line.split()[1].startswith(b"4"), line
    assert b"top secret" not in result.stdout


def test_a_symlink_out_of_the_share_is_refused(share: Share) -> None:
    write(share.root.parent / "outside", b"top secret")
    (share.root / "link").symlink_to(share.root.parent / "outside")
    assert status(url(share, "/link")) == 400
    assert b"top secret" not in curl(url(share, "/link")).stdout


def test_malformed_and_oversized_requests(share: Share) -> None:
    bad = exchange(share, b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400 ")
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
    assert exchange(share, huge).startswith(b"HTTP/1.1 431 ")
    for piece in (4000, 30_000):  # whole, and in pieces while h11 waits for more
        with socket.create_connection((share.endpoint.host, share.endpoint.port), WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(8):
                sock.sendall(b"X-Long: " + b"a" * piece + b"\r\n")
                time.sleep(0.01)
            assert recv_all(sock).startswith(b"HTTP/1.1 431 ")


def test_keep_alive_serves_several_requests_on_one_connection(share: Share) -> None:
    write(share.root / "a", b"A")
    write(share.root / "b", b"B")
    result = curl("-w", "%{num_connects}", url(share, "/a"), url(share, "/b"))
    assert result.stdout == b"A1B0"


def test_the_files_protocol_and_plain_downloads_keep_working(share: Share) -> None:
    write(share.root / "a.txt", b"plain")
    assert exchange(share, b"a.txt\n") == b"plain"
    with share.connect() as client:
        assert [e.name for e in client.list("")] == ["a.txt"]
    assert curl(url(share, "/a.txt")).stdout == b"plain"


def test_slow_request_heads_are_closed_by_the_idle_deadline(tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    threaded = ThreadedServer(FilesService(root), ["127.0.0.1:0"], ServerConfig(idle_timeout=0.4))
    (endpoint,) = threaded.start()
    try:
        with socket.create_connection((endpoint.host, endpoint.port), WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            started = time.monotonic()
            said = b""
            sock.settimeout(0.1)
            while time.monotonic() - started < WAIT:
                try:
                    sock.sendall(b"X")  # a byte now and then, never the whole head
                    got = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not got:
                    break
                said += got
            assert time.monotonic() - started < 3
            assert said.startswith(b"HTTP/1.1 408 ")
    finally:
        threaded.stop()
