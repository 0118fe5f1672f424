"""``get EP FILE -`` writes to stdout and ``put - EP NAME`` reads stdin, like curl and tar."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from files_commands import environment, socketeer, stderr_on_a_terminal, succeeds, user_directory
from shares import TOKEN, Share, digest, sha256, snapshot, write
from support import WAIT, assert_one_line_error, socketeer_command

MIB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("no_errors_logged")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return user_directory(tmp_path)


def test_get_dash_writes_the_file_to_stdout(share: Share, work: Path) -> None:
    data = write(share.root / "notes.bin", os.urandom(3 * MIB + 7))
    result = socketeer("get", share.endpoint, "notes.bin", "-", cwd=work)
    assert (result.returncode, result.stderr) == (0, b"")
    assert sha256(result.stdout) == sha256(data)
    assert list(work.iterdir()) == [], "no file named - (and no partial file)"


def test_progress_and_summary_never_go_to_stdout(share: Share, work: Path) -> None:
    data = write(share.root / "notes.bin", os.urandom(2 * MIB))
    shown, out = stderr_on_a_terminal("get", share.endpoint, "notes.bin", "-", cwd=work)
    assert sha256(out) == sha256(data)
    assert f"notes.bin: received {2 * MIB:,} bytes, BLAKE3 verified" in shown


def test_get_dash_is_still_verified(share: Share, work: Path) -> None:
    data = write(share.root / "notes.bin", os.urandom(100_000))

    async def wrong_digest(*_: object) -> str:
        return "0" * 64

    share.service.digest = wrong_digest  # type: ignore[method-assign,assignment]
    result = socketeer("get", share.endpoint, "notes.bin", "-", cwd=work)
    assert result.stdout == data
    assert_one_line_error(result, 1, "notes.bin: BLAKE3 mismatch; what was written is wrong")
    result = socketeer("get", "--hash", "sha256", share.endpoint, "notes.bin", "-", cwd=work)
    assert_one_line_error(result, 1, "notes.bin: SHA-256 mismatch; what was written is wrong")


def test_a_reader_that_goes_away_ends_get_quietly(share: Share, work: Path) -> None:
    """``socketeer get EP big -  | head -c 10``: exit 141 (SIGPIPE's), nothing on stderr."""
    data = write(share.root / "big.bin", os.urandom(24 * MIB))
    proc = subprocess.Popen(
        socketeer_command("get", str(share.endpoint), "big.bin", "-"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        cwd=work,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(10) == data[:10]
    proc.stdout.close()
    assert proc.wait(WAIT) == 141
    assert proc.stderr.read() == b""
    proc.stderr.close()
    assert list(work.iterdir()) == []


def test_put_dash_uploads_stdin(share: Share, work: Path) -> None:
    data = os.urandom(3 * MIB + 1)
    before = time.time()
    result = socketeer("put", "-", share.endpoint, "from-pipe.bin", token=TOKEN, input=data)
    assert (result.returncode, result.stderr) == (0, b"")
    assert digest(share.root / "from-pipe.bin") == sha256(data)
    assert (share.root / "from-pipe.bin").stat().st_mtime >= before - 1, "stamped on arrival"


def test_put_dash_from_a_redirected_file(share: Share, work: Path) -> None:
    data = write(work / "mine.bin", os.urandom(MIB + 3))
    with (work / "mine.bin").open("rb") as stdin:
        result = subprocess.run(
            socketeer_command("put", "-", str(share.endpoint), "docs/mine.bin", "-p"),
            stdin=stdin,
            capture_output=True,
            env=environment(TOKEN),
            timeout=WAIT,
            check=False,
        )
    assert (result.returncode, result.stderr) == (0, b"")
    assert digest(share.root / "docs" / "mine.bin") == sha256(data)


def test_stdin_and_stdout_need_one_file(share: Share, work: Path) -> None:
    write(share.root / "photos" / "a.jpg", b"a")
    for args, text in (
        (("put", "-", share.endpoint), "needs a remote file name"),
        (("put", "-", share.endpoint, "photos/"), "needs a remote file name"),
        (("put", "-r", "-", share.endpoint, "x"), "-r cannot read a directory from stdin"),
        (("get", "-r", share.endpoint, "photos", "-"), "-r cannot write to stdout"),
    ):
        assert_one_line_error(socketeer(*args, token=TOKEN, input=b"x"), 2, text)
    assert_one_line_error(socketeer("get", share.endpoint, "photos", "-"), 1, "is a directory")
    into_a_directory = socketeer("put", "-", share.endpoint, "photos", token=TOKEN, input=b"x")
    assert_one_line_error(into_a_directory, 1, "photos: is a directory")
    assert snapshot(share.root) == {"photos": None, "photos/a.jpg": b"a"}
    assert succeeds("ls", share.endpoint, "photos").count("\n") == 1
