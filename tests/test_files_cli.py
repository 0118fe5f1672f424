"""The files commands as users run them: serve files, ls, get, put, mkdir and rm.

Each command is a real process; most talk to a files server in this process
(``socketeer serve files`` itself is started as a process where it is the
point).  Tests check exit codes, the one-line errors, what lands on disk, and
what a terminal shows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from files_commands import on_a_terminal, size_of, socketeer, succeeds, user_directory
from relay import StallingRelay
from shares import TOKEN, ServeShare, Share, digest, sha256, snapshot, write
from socketeer.cli import cli, serve_files
from socketeer.cli import files as files_cli
from socketeer.services.files import Entry, FilesService
from support import (
    WAIT,
    ServeProcess,
    assert_one_line_error,
    socketeer_command,
    wait_until,
)

MIB = 1024 * 1024
needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")
pytestmark = pytest.mark.usefixtures("no_errors_logged")


# --- a share served in this process ---------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return user_directory(tmp_path)


def sent_log(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The server's log lines for downloads of ``name``."""
    return [r.getMessage() for r in caplog.records if f"sent {name!r}" in r.getMessage()]


# --- ls, get, put, mkdir, rm ----------------------------------------------------------


def ls_line(kind: str, size: int, mtime: float, name: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))
    return f"{kind} {size:>14,} {when} {name}"


def test_ls_and_ls_json(share: Share) -> None:
    notes = write(share.root / "notes.txt", b"n" * 1_234_567, mtime=1_700_000_000.5)
    (share.root / "photos").mkdir()
    write(share.root / "photos" / "cat.jpg", b"\xff\xd8 meow")
    photos = (share.root / "photos").stat()
    assert succeeds("ls", share.endpoint).splitlines() == [
        ls_line("-", len(notes), 1_700_000_000.5, "notes.txt"),
        ls_line("d", photos.st_size, photos.st_mtime, "photos/"),
    ]
    assert [json.loads(line) for line in succeeds("ls", "--json", share.endpoint).splitlines()] == [
        {
            "name": "notes.txt",
            "type": "file",
            "size": 1_234_567,
            "mtime": 1_700_000_000.5,
            "hash": "blake3",
        },
        {
            "name": "photos",
            "type": "dir",
            "size": photos.st_size,
            "mtime": photos.st_mtime,
            "hash": "blake3",
        },
    ]
    assert succeeds("ls", share.endpoint, "notes.txt").splitlines() == [
        ls_line("-", len(notes), 1_700_000_000.5, "notes.txt")
    ]


def test_get_put_mkdir_rm(share: Share, work: Path) -> None:
    notes = write(share.root / "notes.txt", os.urandom(3 * MIB + 1), mtime=1_690_000_000)
    mine = write(work / "mine.bin", os.urandom(2 * MIB + 7), mtime=1_680_000_000)

    assert succeeds("get", share.endpoint, "notes.txt", cwd=work) == ""
    assert digest(work / "notes.txt") == sha256(notes)
    assert (work / "notes.txt").stat().st_mtime == 1_690_000_000
    succeeds("get", share.endpoint, "notes.txt", work / "copy.txt")
    assert digest(work / "copy.txt") == sha256(notes)

    succeeds("mkdir", share.endpoint, "a/b/c", "-p", "--token", TOKEN)
    assert (share.root / "a" / "b" / "c").is_dir()
    assert_one_line_error(socketeer("mkdir", share.endpoint, "a", token=TOKEN), 1, "exists")
    succeeds("put", work / "mine.bin", share.endpoint, token=TOKEN)  # SOCKETEER_TOKEN
    succeeds("put", work / "mine.bin", share.endpoint, "a/b/", "--token", TOKEN)
    for where in ("mine.bin", "a/b/mine.bin"):
        assert digest(share.root / where) == sha256(mine)
        assert (share.root / where).stat().st_mtime == 1_680_000_000

    succeeds("rm", share.endpoint, "mine.bin", token=TOKEN)
    assert not (share.root / "mine.bin").exists()
    assert_one_line_error(socketeer("rm", share.endpoint, "a", token=TOKEN), 1, "not empty")
    assert (share.root / "a" / "b" / "mine.bin").exists()
    succeeds("rm", "-r", share.endpoint, "a", token=TOKEN)
    assert sorted(snapshot(share.root)) == ["notes.txt"]


def test_ls_a_shows_partial_files_and_rm_deletes_them(share: Share) -> None:
    write(share.root / "notes.txt", b"notes", mtime=1_700_000_000)
    write(share.root / ".big.iso.socketeer-part", b"half", mtime=1_700_000_100)
    assert succeeds("ls", share.endpoint).splitlines() == [
        ls_line("-", 5, 1_700_000_000, "notes.txt")
    ]
    assert succeeds("ls", "-a", share.endpoint).splitlines() == [
        ls_line("p", 4, 1_700_000_100, ".big.iso.socketeer-part"),
        ls_line("-", 5, 1_700_000_000, "notes.txt"),
    ]
    shown = succeeds("ls", "--all", "--json", share.endpoint).splitlines()
    assert json.loads(shown[0]) == {
        "name": ".big.iso.socketeer-part",
        "type": "partial",
        "size": 4,
        "mtime": 1_700_000_100,
        "hash": "blake3",
    }
    succeeds("rm", share.endpoint, ".big.iso.socketeer-part", token=TOKEN)
    assert sorted(snapshot(share.root)) == ["notes.txt"]


def test_put_into_missing_directories_needs_p(share: Share, work: Path) -> None:
    mine = write(work / "mine.bin", os.urandom(1000))
    missing = socketeer("put", work / "mine.bin", share.endpoint, "a/b/mine.bin", token=TOKEN)
    assert_one_line_error(missing, 1, "no such directory on the server (-p makes it)")
    assert snapshot(share.root) == {}
    succeeds("put", "-p", work / "mine.bin", share.endpoint, "a/b/mine.bin", token=TOKEN)
    succeeds("put", "--parents", work / "mine.bin", share.endpoint, "c/d/", token=TOKEN)
    for where in ("a/b/mine.bin", "c/d/mine.bin"):
        assert digest(share.root / where) == sha256(mine)
    into = socketeer("put", work / "mine.bin", share.endpoint, "e/", token=TOKEN)
    assert_one_line_error(into, 1, "e/mine.bin: no such directory")


def test_serve_files_partial_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[FilesService] = []
    monkeypatch.setattr(serve_files, "run_server", lambda service, *_, **__: served.append(service))
    runner = CliRunner()
    for args, ttl in (([], 86400.0), (["--partial-ttl", "60"], 60.0), (["--partial-ttl", "0"], 0)):
        result = runner.invoke(cli, ["serve", "files", str(tmp_path), *args])
        assert result.exit_code == 0, result.output
        assert served.pop().partial_ttl == ttl
    result = runner.invoke(cli, ["serve", "files", str(tmp_path), "--partial-ttl", "-1"])
    assert result.exit_code == 2


def test_serve_files_as_a_process(
    serve_process: ServeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real server on asyncio's own loop: plain downloads, the CLI, and a clean stop."""
    root = tmp_path / "served"
    notes = write(root / "notes.txt", os.urandom(MIB + 3))
    monkeypatch.setenv("SOCKETEER_TOKEN", TOKEN)  # the server's token, from its environment
    args = ["files", str(root), "127.0.0.1:0", "--allow-upload", "--log-level", "debug"]
    server = serve_process("serve", *args)
    endpoint = str(server.endpoints[0])
    if shutil.which("nc") is not None:
        out = tmp_path / "out"
        port = server.endpoints[0].port
        subprocess.run(
            ["sh", "-c", f"echo notes.txt | nc -N 127.0.0.1 {port} > {out}"],
            timeout=WAIT,
            check=True,
        )
        assert digest(out) == sha256(notes)
    succeeds("get", endpoint, "notes.txt", tmp_path / "got.txt")
    assert digest(tmp_path / "got.txt") == sha256(notes)
    succeeds("put", tmp_path / "got.txt", endpoint, "back.txt", token=TOKEN)
    assert digest(root / "back.txt") == sha256(notes)
    assert server.stop() == 0
    log = server.stderr()
    assert "event loop: asyncio" in log
    assert "Traceback" not in log


# --- resume after a killed command ----------------------------------------------------


def test_killed_get_resumes(share: Share, work: Path) -> None:
    data = write(share.root / "big.bin", os.urandom(24 * MIB))
    partial = work / ".big.bin.socketeer-part"
    proxy = StallingRelay(str(share.endpoint), 10 * MIB, upload=False)
    try:
        proc = subprocess.Popen(
            socketeer_command("get", proxy.endpoint, "big.bin"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        try:
            wait_until(lambda: size_of(partial) >= 4 * MIB, "part of the download on disk")
        finally:
            proc.kill()
            proc.wait(WAIT)
    finally:
        proxy.close()
    kept = partial.read_bytes()
    assert 0 < len(kept) < len(data)
    assert sha256(data[: len(kept)]) == sha256(kept)
    assert not (work / "big.bin").exists()

    shown = on_a_terminal("get", share.endpoint, "big.bin", cwd=work)
    assert f"big.bin: received {len(data):,} bytes, resumed at {len(kept):,}" in shown
    assert "BLAKE3 verified" in shown
    assert digest(work / "big.bin") == sha256(data)
    assert not partial.exists()


def test_killed_put_resumes_and_the_target_appears_only_when_complete(
    share: Share, work: Path
) -> None:
    data = write(work / "big.bin", os.urandom(24 * MIB))
    old = write(share.root / "big.bin", b"the old version\n")
    partial = share.root / ".big.bin.socketeer-part"
    proxy = StallingRelay(str(share.endpoint), 10 * MIB, upload=True)
    try:
        proc = subprocess.Popen(
            socketeer_command("put", str(work / "big.bin"), proxy.endpoint, "--token", TOKEN),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: size_of(partial) >= 9 * MIB, "part of the upload on the server")
            assert (share.root / "big.bin").read_bytes() == old
            listed = succeeds("ls", "--json", share.endpoint).splitlines()
            assert [(e["name"], e["size"]) for e in map(json.loads, listed)] == [
                ("big.bin", len(old))
            ]
        finally:
            proc.kill()
            proc.wait(WAIT)
    finally:
        proxy.close()
    wait_until(share.settled, "the server to let go of the upload")
    kept = partial.stat().st_size
    assert (share.root / "big.bin").read_bytes() == old

    shown = on_a_terminal("put", work / "big.bin", share.endpoint, token=TOKEN)
    assert f"big.bin: sent {len(data):,} bytes, resumed at {kept:,}" in shown
    assert digest(share.root / "big.bin") == sha256(data)
    assert not partial.exists()


# --- names beyond ASCII ---------------------------------------------------------------


def test_non_ascii_names(share: Share, work: Path) -> None:
    party = write(share.root / "🎉.bin", os.urandom(10_000))
    cafe = write(work / "café.txt", "crème brûlée\n".encode())
    succeeds("mkdir", share.endpoint, "中文", token=TOKEN)
    succeeds("put", work / "café.txt", share.endpoint, "中文", token=TOKEN)
    assert (share.root / "中文" / "café.txt").read_bytes() == cafe
    names = [
        json.loads(line)["name"]
        for line in succeeds("ls", "--json", share.endpoint, "中文").splitlines()
    ]
    assert names == ["café.txt"]
    succeeds("get", share.endpoint, "🎉.bin", cwd=work)
    assert (work / "🎉.bin").read_bytes() == party


# --- recursive copies, scp-like targets, up-to-date files, progress -------------------


def test_get_and_put_a_snapshot(share: Share, work: Path) -> None:
    write(share.root / "tree" / "a.txt", b"a\n")
    write(share.root / "tree" / "sub" / "b.bin", os.urandom(100_000))
    write(share.root / "tree" / "sub" / "deeper" / "c.txt", b"c\n")
    (share.root / "tree" / "empty").mkdir()
    (share.root / "tree" / "sub" / "also-empty").mkdir()
    original = snapshot(share.root / "tree")

    succeeds("get", "-r", "--no-verify", share.endpoint, "tree/", work / "copy")  # its contents
    assert snapshot(work / "copy") == original
    succeeds("get", "-r", share.endpoint, "tree", work / "into")  # under its own name
    assert snapshot(work / "into") == {
        "tree": None,
        **{f"tree/{k}": v for k, v in original.items()},
    }

    succeeds("put", "-r", work / "copy", share.endpoint, token=TOKEN)
    assert snapshot(share.root / "copy") == original


def test_directory_without_r_is_one_line_exit_1(share: Share, work: Path) -> None:
    (share.root / "dir").mkdir()
    (work / "local-dir").mkdir()
    assert_one_line_error(socketeer("get", share.endpoint, "dir", cwd=work), 1, "use -r")
    assert_one_line_error(
        socketeer("put", work / "local-dir", share.endpoint, token=TOKEN), 1, "use -r"
    )
    assert sorted(snapshot(work)) == ["local-dir"]
    assert sorted(snapshot(share.root)) == ["dir"]


def test_get_into_an_existing_directory_puts_the_file_inside(share: Share, work: Path) -> None:
    notes = write(share.root / "docs" / "notes.txt", b"notes\n")
    (work / "here").mkdir()
    succeeds("get", share.endpoint, "docs/notes.txt", work / "here")
    assert snapshot(work / "here") == {"notes.txt": notes}


def test_up_to_date_files_are_skipped_unless_forced(
    share: Share, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    write(share.root / "notes.txt", os.urandom(100_000), mtime=1_700_000_000)
    succeeds("get", share.endpoint, "notes.txt", cwd=work)
    first = (work / "notes.txt").stat().st_ino
    succeeds("get", share.endpoint, "notes.txt", cwd=work)
    assert (work / "notes.txt").stat().st_ino == first, "an up-to-date file is left alone"
    assert len(sent_log(caplog, "notes.txt")) == 1, "and no byte of it is sent again"
    succeeds("get", "--force", share.endpoint, "notes.txt", cwd=work)
    assert (work / "notes.txt").stat().st_ino != first
    assert len(sent_log(caplog, "notes.txt")) == 2


def test_progress_and_summaries_only_on_a_terminal_and_never_with_q(
    share: Share, work: Path
) -> None:
    write(share.root / "notes.txt", os.urandom(MIB))
    shown = on_a_terminal("get", share.endpoint, "notes.txt", cwd=work)
    assert f"notes.txt: received {MIB:,} bytes, BLAKE3 verified" in shown
    assert "notes.txt: up to date" in on_a_terminal("get", share.endpoint, "notes.txt", cwd=work)
    assert on_a_terminal("get", "-q", "--force", share.endpoint, "notes.txt", cwd=work) == ""
    result = socketeer("get", "--force", share.endpoint, "notes.txt", cwd=work)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


# --- tokens ---------------------------------------------------------------------------


def test_writes_need_the_right_token(serve_share: ServeShare, work: Path, tmp_path: Path) -> None:
    share = serve_share()
    write(work / "new.txt", b"new\n")
    write(share.root / "keep.txt", b"keep\n")
    before = snapshot(share.root)
    put = ("put", work / "new.txt", share.endpoint)
    assert_one_line_error(socketeer(*put), 1, "token")
    assert_one_line_error(socketeer(*put, token="wrong"), 1, "wrong token")
    assert_one_line_error(socketeer("rm", share.endpoint, "keep.txt"), 1, "token")
    assert snapshot(share.root) == before

    read_only = serve_share(tmp_path / "read-only", allow_upload=False, token=None)
    write(read_only.root / "keep.txt", b"keep\n")
    assert_one_line_error(socketeer("put", work / "new.txt", read_only.endpoint), 1, "read-only")
    assert_one_line_error(socketeer("rm", read_only.endpoint, "keep.txt"), 1, "read-only")
    assert snapshot(read_only.root) == {"keep.txt": b"keep\n"}


# --- exit codes -----------------------------------------------------------------------


def test_usage_errors_are_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(socketeer("get", "localhost", "notes.txt"), 2, "expected HOST:PORT")
    assert_one_line_error(socketeer("get", "--frobnicate", "127.0.0.1:1", "x"), 2, "frobnicate")
    assert_one_line_error(
        socketeer("put", tmp_path / "missing.txt", "127.0.0.1:1"), 2, "does not exist"
    )
    assert_one_line_error(
        socketeer("serve", "files", tmp_path / "missing", "127.0.0.1:0"), 2, "does not exist"
    )
    (tmp_path / "shared").mkdir()
    no_token = socketeer("serve", "files", tmp_path / "shared", "127.0.0.1:0", "--allow-upload")
    assert_one_line_error(no_token, 2, "--allow-upload needs a token")


def test_a_server_that_is_not_a_files_server_is_named_in_one_line(
    serve_process: ServeProcess,
) -> None:
    greet = serve_process("serve", "greet", "127.0.0.1:0")
    result = socketeer("ls", str(greet.endpoints[0]))
    assert_one_line_error(result, 1, "is not a files server (it said 'welcome!')")


class NotAFilesServer:
    """The tutorials' servers, one connection after another: each reads one recv() and answers.

    ``answer`` maps what arrived to the reply (b"" sends nothing); then the
    connection closes.
    """

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for _ in range(20):
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(WAIT)
                with contextlib.suppress(OSError):
                    conn.sendall(self._answer(conn.recv(1024)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
        self._listener.close()
        self._thread.join(WAIT)


def downloader(root: Path) -> Callable[[bytes], bytes]:
    """The classic file server: the request is a file name; a missing file gets nothing."""

    def answer(name: bytes) -> bytes:
        try:
            return (root / name.decode(errors="replace")).read_bytes()
        except (OSError, ValueError):
            return b""

    return answer


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        pytest.param(
            None,
            "it closed the connection without answering; if it speaks TLS, use tls://",
            id="downloader",
        ),
        pytest.param(lambda request: request, "its answer is not the files protocol's", id="echo"),
    ],
)
def test_every_files_command_names_a_server_that_is_not_a_files_server(
    work: Path, answer: Callable[[bytes], bytes] | None, said: str
) -> None:
    write(work / "mine.txt", b"mine\n")
    server = NotAFilesServer(answer or downloader(work))
    try:
        for command in (
            ("ls", server.endpoint),
            ("get", server.endpoint, "notes.txt"),
            ("get", server.endpoint, "notes.txt", "-"),
            ("put", work / "mine.txt", server.endpoint),
            ("mkdir", server.endpoint, "new"),
            ("rm", server.endpoint, "mine.txt"),
        ):
            result = socketeer(*command, token=TOKEN, cwd=work)
            assert_one_line_error(result, 1, f"{server.endpoint} is not a files server ({said})")
            assert result.stdout == b""
    finally:
        server.close()
    assert sorted(snapshot(work)) == ["mine.txt"]


def test_failures_are_one_line_exit_1(share: Share, work: Path) -> None:
    assert_one_line_error(socketeer("get", share.endpoint, "missing.txt", cwd=work), 1, "missing")
    assert list(work.iterdir()) == []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        port = probe.getsockname()[1]
        refused = socketeer("ls", f"127.0.0.1:{port}")
    assert_one_line_error(refused, 1, "connection refused")


def test_nothing_but_the_shared_files_is_served(share: Share, work: Path, tmp_path: Path) -> None:
    write(tmp_path / "secret.txt", b"secret\n")
    (share.root / "link").symlink_to(tmp_path / "secret.txt")
    shown = succeeds("ls", "--json", share.endpoint)
    assert [json.loads(line)["type"] for line in shown.splitlines()] == ["link"]
    assert_one_line_error(socketeer("get", share.endpoint, "link", cwd=work), 1, "outside")
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("mtime", [1e17, -1e17, 2.0**62])
def test_ls_shows_a_time_the_c_library_cannot(mtime: float) -> None:
    # A tmpfs file can carry such a time; ls must still print its line.
    line = files_cli._format_entry(Entry("far", "file", 1, mtime))
    assert line.startswith("- ")
    assert line.endswith(" far")
    assert f"{mtime:.0f}" in line


def test_a_plain_endpoint_costs_no_tls_context(
    share: Share, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading the system's CA certificates takes tens of milliseconds: a command that
    # will not speak TLS (and names no TLS file to check) must not pay for it.
    def refused(*args: object, **kwargs: object) -> ssl.SSLContext:
        raise AssertionError("a TLS context was made")

    monkeypatch.setattr(ssl, "create_default_context", refused)
    write(share.root / "a.txt", b"a\n")
    target = work / "a.txt"
    result = CliRunner().invoke(cli, ["get", "-q", str(share.endpoint), "a.txt", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b"a\n"


def test_the_files_commands_start_without_accounts_chat_tftp_or_servers() -> None:
    # Each of these took tens of milliseconds of every ls, get and put's start.
    unneeded = [
        "socketeer.accounts",
        "socketeer.services.chat",
        "socketeer.services.tftp",
        "socketeer.cli.serve",
        "socketeer.server",
    ]
    probe = (
        "import sys; import socketeer.cli.files; "
        f"print(sorted(m for m in {unneeded!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert result.stdout.strip() == "[]"
