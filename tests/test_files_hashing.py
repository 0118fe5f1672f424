"""What a verified upload hashes: the very bytes that cross the connection, read once."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from shares import Share, partial_of, write
from socketeer.services.files import client as client_module
from socketeer.services.files.client import FilesClient, FilesError, TransferProgress
from socketeer.services.files.hashes import Hasher, new_hasher

MIB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("no_errors_logged")


class Recording:
    """A hasher that keeps what it was given."""

    def __init__(self, name: str) -> None:
        self._hasher = new_hasher(name)
        self.given = bytearray()

    def update(self, data: bytes | bytearray | memoryview, /) -> object:
        self.given += data
        return self._hasher.update(data)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


class Wire:
    """The client's socket, noting what is sent through it and how."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent = bytearray()
        self.sendfile_calls = 0

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        self._sock.sendall(data)

    def sendfile(self, *args: Any) -> int:
        self.sendfile_calls += 1
        return self._sock.sendfile(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def watched(client: FilesClient, monkeypatch: pytest.MonkeyPatch) -> tuple[Wire, list[Recording]]:
    """Note what ``client`` sends and what its hashers are given."""
    wire = Wire(client._sock)
    monkeypatch.setattr(client, "_sock", wire)
    hashers: list[Recording] = []

    def recording(name: str) -> Hasher:
        hashers.append(Recording(name))
        return hashers[-1]

    monkeypatch.setattr(client_module, "new_hasher", recording)
    return wire, hashers


@pytest.mark.parametrize("resumed", [False, True], ids=["whole", "resumed"])
def test_a_verified_upload_hashes_the_bytes_it_sends(
    share: Share, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resumed: bool
) -> None:
    data = write(tmp_path / "big.bin", os.urandom(5 * MIB + 7))
    kept = 2 * MIB + 3 if resumed else 0
    if kept:
        write(partial_of(share.root / "big.bin"), data[:kept])
    with share.connect(hash="blake3") as client:
        wire, hashers = watched(client, monkeypatch)
        result = client.upload(tmp_path / "big.bin", "big.bin")
    assert (result.resumed_from, result.sent) == (kept, len(data) - kept)
    assert result.digest == blake3.blake3(data).hexdigest()
    assert (share.root / "big.bin").read_bytes() == data
    # One read feeds both: what was hashed past the server's partial is what was sent.
    assert wire.sendfile_calls == 0
    assert len(hashers) == 1
    assert bytes(hashers[0].given) == data
    assert data[kept:] in bytes(wire.sent)


def test_an_unverified_upload_still_sends_from_the_page_cache(
    share: Share, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write(tmp_path / "big.bin", os.urandom(3 * MIB))
    with share.connect(hash="blake3") as client:
        wire, hashers = watched(client, monkeypatch)
        client.upload(tmp_path / "big.bin", "big.bin", verify=False)
    assert (share.root / "big.bin").read_bytes() == data
    assert wire.sendfile_calls > 0
    assert data not in bytes(wire.sent)
    assert hashers == []


class OnFirstBytes(TransferProgress):
    """Calls ``action`` once, when the first bytes of a transfer have moved."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.action: Callable[[], object] | None = action

    def advance(self, count: int) -> None:
        action, self.action = self.action, None
        if action is not None:
            action()


@pytest.mark.parametrize("change", ["shrink", "rewrite"])
def test_a_verified_upload_of_a_file_changing_meanwhile_replaces_nothing(
    share: Share, tmp_path: Path, change: str
) -> None:
    path = tmp_path / "moving.bin"
    write(path, os.urandom(32 * MIB), mtime=1_500_000_000)
    old = write(share.root / "moving.bin", b"the old version\n")

    def alter() -> None:
        with path.open("r+b") as file:
            if change == "shrink":
                file.truncate(MIB)
            else:
                file.write(os.urandom(MIB))  # same size, other bytes

    with share.connect(hash="blake3") as client, pytest.raises(FilesError) as info:
        client.upload(path, "moving.bin", progress=OnFirstBytes(alter))
    assert info.value.code == "changed"
    assert "run again" in str(info.value)
    share.wait_settled()
    assert (share.root / "moving.bin").read_bytes() == old
    with share.connect(hash="blake3") as client:  # the next try sends the new version
        client.upload(path, "moving.bin")
    assert (share.root / "moving.bin").read_bytes() == path.read_bytes()
