"""Broken-off transfers: what ``get`` and ``put`` say, what they keep, and how they resume.

A :class:`StallingRelay` stands for a network that hangs in the middle of a
transfer, so that the command can be interrupted (SIGINT, as Ctrl-C sends)
or its server killed at a known point.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from files_commands import environment, on_a_terminal, size_of, socketeer, user_directory
from relay import StallingRelay
from shares import TOKEN, Share, digest, partial_of, sha256, write
from support import WAIT, ServeProcess, ServerProcess, socketeer_command, wait_until

MIB = 1024 * 1024
SIZE = 24 * MIB
RESUME = "run the same command again to resume"
pytestmark = pytest.mark.usefixtures("no_errors_logged")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return user_directory(tmp_path)


def start(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        socketeer_command(*map(str, args)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(TOKEN),
        cwd=cwd,
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Wait for ``proc``; its exit status and stderr."""
    _, err = proc.communicate(timeout=WAIT)
    text = err.decode()
    assert "Traceback" not in text, text
    return proc.returncode, text


def numbers(text: str) -> list[int]:
    """The byte counts in a message, in order ("1,234" is 1234)."""
    return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?= bytes| of )", text)]


@pytest.fixture
def relay_factory() -> Iterator[list[StallingRelay]]:
    relays: list[StallingRelay] = []
    yield relays
    for relay in relays:
        relay.close()


def stalled(relays: list[StallingRelay], target: object, *, upload: bool) -> StallingRelay:
    relay = StallingRelay(str(target), 10 * MIB, upload=upload)
    relays.append(relay)
    return relay


def serve_files(serve_process: ServeProcess, root: Path) -> ServerProcess:
    args = ["files", str(root), "127.0.0.1:0", "--allow-upload", "--token", TOKEN]
    return serve_process("serve", *args)


def kill_mid_transfer(
    server: ServerProcess, relay: StallingRelay, under_way: Callable[[], bool]
) -> None:
    """Once ``under_way()`` holds, kill ``server`` by its PID, then let the relay go on.

    What the dead server had sent arrives, then the end of the connection
    (or, for an upload, a reset).
    """
    wait_until(under_way, "part of the file on the other side")
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(WAIT)
    relay.release()


# --- Ctrl-C -----------------------------------------------------------------------------


def test_ctrl_c_during_get_says_how_far_it_got(
    share: Share, work: Path, relay_factory: list[StallingRelay]
) -> None:
    data = write(share.root / "big.bin", os.urandom(SIZE))
    partial = partial_of(work / "big.bin")
    relay = stalled(relay_factory, share.endpoint, upload=False)
    proc = start("get", relay.endpoint, "big.bin", cwd=work)
    wait_until(lambda: size_of(partial) >= 4 * MIB, "part of the download on disk")
    proc.send_signal(signal.SIGINT)
    status, err = finish(proc)
    kept = size_of(partial)
    assert status == 130
    assert err == f"socketeer: interrupted; got {kept:,} of {SIZE:,} bytes of big.bin; {RESUME}\n"
    assert sha256(partial.read_bytes()) == sha256(data[:kept])

    shown = on_a_terminal("get", share.endpoint, "big.bin", cwd=work)
    assert f"big.bin: received {SIZE:,} bytes, resumed at {kept:,}, BLAKE3 verified" in shown
    assert digest(work / "big.bin") == sha256(data)


def test_ctrl_c_during_put_says_how_far_it_got(
    share: Share, work: Path, relay_factory: list[StallingRelay]
) -> None:
    data = write(work / "big.bin", os.urandom(SIZE))
    partial = partial_of(share.root / "big.bin")
    relay = stalled(relay_factory, share.endpoint, upload=True)
    proc = start("put", "big.bin", relay.endpoint, cwd=work)
    wait_until(lambda: size_of(partial) >= 9 * MIB, "part of the upload on the server")
    proc.send_signal(signal.SIGINT)
    status, err = finish(proc)
    assert status == 130
    sent, total = numbers(err)
    assert err == f"socketeer: interrupted; sent {sent:,} of {SIZE:,} bytes of big.bin; {RESUME}\n"
    assert (total, sent >= 10 * MIB - 4096) == (SIZE, True)  # the relay took 10 MiB with the put

    relay.close()  # the server hears of the end of the connection
    share.wait_settled()
    kept = size_of(partial)
    shown = on_a_terminal("put", work / "big.bin", share.endpoint, token=TOKEN)
    assert f"big.bin: sent {SIZE:,} bytes, resumed at {kept:,}" in shown
    assert digest(share.root / "big.bin") == sha256(data)


# --- a killed server --------------------------------------------------------------------


def test_a_killed_server_during_get(
    serve_process: ServeProcess,
    tmp_path: Path,
    work: Path,
    relay_factory: list[StallingRelay],
) -> None:
    root = tmp_path / "served"
    data = write(root / "big.bin", os.urandom(SIZE))
    partial = partial_of(work / "big.bin")
    server = serve_files(serve_process, root)
    relay = stalled(relay_factory, server.endpoints[0], upload=False)
    proc = start("get", relay.endpoint, "big.bin", cwd=work)
    kill_mid_transfer(server, relay, lambda: size_of(partial) >= 4 * MIB)
    status, err = finish(proc)
    kept = size_of(partial)
    assert status == 1
    assert err == (
        f"socketeer: error: connection to {relay.endpoint} lost with {SIZE - kept:,} bytes "
        f"still to come; got {kept:,} of {SIZE:,} bytes of big.bin; {RESUME}\n"
    )
    assert sha256(partial.read_bytes()) == sha256(data[:kept])

    again = serve_files(serve_process, root)
    shown = on_a_terminal("get", again.endpoints[0], "big.bin", cwd=work)
    assert f"big.bin: received {SIZE:,} bytes, resumed at {kept:,}, BLAKE3 verified" in shown
    assert digest(work / "big.bin") == sha256(data)
    assert again.stop() == 0
    assert f"sent 'big.bin' ({SIZE - kept} bytes from {kept})" in again.stderr()


def test_a_killed_server_during_put(
    serve_process: ServeProcess,
    tmp_path: Path,
    work: Path,
    relay_factory: list[StallingRelay],
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    data = write(work / "big.bin", os.urandom(SIZE))
    partial = partial_of(root / "big.bin")
    server = serve_files(serve_process, root)
    relay = stalled(relay_factory, server.endpoints[0], upload=True)
    proc = start("put", "big.bin", relay.endpoint, cwd=work)
    kill_mid_transfer(server, relay, lambda: size_of(partial) >= 9 * MIB)
    status, err = finish(proc)
    assert status == 1
    to_send, sent, total = numbers(err)
    assert err == (
        f"socketeer: error: connection to {relay.endpoint} lost with {to_send:,} bytes "
        f"still to send; sent {sent:,} of {SIZE:,} bytes of big.bin; {RESUME}\n"
    )
    assert (total, sent + to_send) == (SIZE, SIZE)
    kept = size_of(partial)
    assert sent >= kept > 0

    again = serve_files(serve_process, root)
    shown = on_a_terminal("put", work / "big.bin", again.endpoints[0], token=TOKEN)
    assert f"big.bin: sent {SIZE:,} bytes, resumed at {kept:,}" in shown
    assert digest(root / "big.bin") == sha256(data)
    assert again.stop() == 0
    assert f"received 'big.bin' ({SIZE} bytes, resumed from {kept})" in again.stderr()


# --- a resumed file that does not verify ------------------------------------------------


def test_a_resumed_download_that_does_not_verify_is_fetched_again_and_says_so(
    share: Share, work: Path
) -> None:
    data = write(share.root / "notes.bin", os.urandom(MIB))
    write(partial_of(work / "notes.bin"), b"not the first bytes of notes.bin")
    result = socketeer("get", share.endpoint, "notes.bin", cwd=work)
    assert result.returncode == 0
    assert result.stderr.decode() == (
        "socketeer: notes.bin: the resumed download did not verify; fetching all of it again\n"
    )
    assert digest(work / "notes.bin") == sha256(data)
    write(partial_of(work / "notes.bin"), b"wrong")
    quiet = socketeer("get", "-q", "--force", share.endpoint, "notes.bin", cwd=work)
    assert (quiet.returncode, quiet.stderr) == (0, b"")


def test_a_resumed_upload_that_does_not_verify_is_sent_again_and_says_so(
    share: Share, work: Path
) -> None:
    data = write(work / "notes.bin", os.urandom(MIB))
    write(partial_of(share.root / "notes.bin"), b"not the first bytes of notes.bin")
    result = socketeer("put", work / "notes.bin", share.endpoint, token=TOKEN)
    assert result.returncode == 0
    assert result.stderr.decode() == (
        "socketeer: notes.bin: the resumed upload did not verify; sending all of it again\n"
    )
    assert digest(share.root / "notes.bin") == sha256(data)


# --- the server's log -------------------------------------------------------------------


def test_the_server_logs_resumed_transfers_as_such(
    share: Share, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    data = write(share.root / "down.bin", os.urandom(MIB))
    write(partial_of(work / "down.bin"), data[:1000])
    write(work / "up.bin", data)
    write(partial_of(share.root / "up.bin"), data[:3000])
    for args in (
        ("get", share.endpoint, "down.bin"),
        ("get", share.endpoint, "down.bin", "fresh.bin"),
        ("put", "up.bin", share.endpoint),
        ("put", "up.bin", share.endpoint, "fresh.bin"),
    ):
        result = socketeer(*args, token=TOKEN, cwd=work)
        assert (result.returncode, result.stderr) == (0, b"")
    logged = [r.getMessage().split(": ", 1)[-1] for r in caplog.records]
    for line in (
        f"sent 'down.bin' ({MIB - 1000} bytes from 1000)",
        f"sent 'down.bin' ({MIB} bytes)",
        f"received 'up.bin' ({MIB} bytes, resumed from 3000)",
        f"received 'fresh.bin' ({MIB} bytes)",
    ):
        assert line in logged, logged
