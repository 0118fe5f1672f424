"""Trees of small files: one listing, requests pipelined, hashes negotiated, quick checks."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from rich.console import Console

from files_commands import on_a_terminal, succeeds
from relay import DelayingRelay
from scripted_files_server import ScriptedFilesServer
from shares import TOKEN, Share, snapshot, write
from socketeer.cli.progress import _RichProgress, progress_bars
from socketeer.errors import LocalProtocolError
from socketeer.services.files.client import FilesClient, FilesError, TransferProgress
from socketeer.services.files.connection import SERVER, FilesConnection, frame
from socketeer.services.files.messages import (
    Done,
    Entry,
    Error,
    FileHeader,
    Get,
    Hello,
    List,
    Listing,
    Message,
    Ok,
    Put,
    Stat,
    StatReply,
    Welcome,
    decode,
)
from support import WAIT

pytestmark = pytest.mark.usefixtures("no_errors_logged")

#: Each way: a network with a round trip of 50 ms.
DELAY = 0.025


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def a_tree(root: Path, files: int = 100) -> dict[str, bytes]:
    made = {}
    for i in range(files):
        name = f"d{i % 4}/sub/f{i:03}" if i % 2 else f"d{i % 4}/f{i:03}"
        made[name] = write(root / name, os.urandom(1024), mtime=1_700_000_000 + i)
    return made


def fetch_tree(client: FilesClient, remote: str, local: Path) -> list[str]:
    """What ``get -r`` does with a client: one listing, then the files, pipelined."""
    files = []
    for path, entry in client.walk(remote):
        if entry.type == "file":
            target = local / path
            target.parent.mkdir(parents=True, exist_ok=True)
            files.append((path, target, entry))
    return [result.remote for result in client.download_many(files)]


def test_a_tree_of_small_files_costs_a_few_round_trips_not_one_per_file(
    share: Share, tmp_path: Path
) -> None:
    made = a_tree(share.root / "photos")
    relay = DelayingRelay(str(share.endpoint), DELAY)
    try:
        with FilesClient.connect(relay.endpoint, token=TOKEN, timeout=WAIT) as client:
            started = time.monotonic()
            fetched = fetch_tree(client, "photos", tmp_path / "down")
            took_get = time.monotonic() - started
            local = tmp_path / "down" / "photos"
            pairs = [(local / name, f"copy/{name}") for name in sorted(made)]
            started = time.monotonic()
            client.mkdirs(sorted({str(Path(remote).parent) for _, remote in pairs}))
            sent = list(client.upload_many(pairs))
            took_put = time.monotonic() - started
    finally:
        relay.close()
    assert sorted(fetched) == [f"photos/{name}" for name in sorted(made)]
    assert all(not result.skipped for result in sent)
    assert snapshot(share.root / "copy") == snapshot(share.root / "photos")
    # One request at a time, 100 files would take 100 round trips (5 s) each way.
    assert took_get < 2.0, f"get of 100 files took {took_get:.2f} s over a 50 ms round trip"
    assert took_put < 2.0, f"put of 100 files took {took_put:.2f} s over a 50 ms round trip"


def test_a_tree_is_listed_parents_first_in_one_request(share: Share) -> None:
    a_tree(share.root / "photos", files=8)
    (share.root / "photos" / "d0" / "loop").symlink_to("..")  # a way back up: not entered
    (share.root / "photos" / "empty").mkdir()
    with share.connect() as client:
        listed = [(path, entry.type) for path, entry in client.tree("photos/")]
    expected = [
        ("photos/d0", "dir"),
        ("photos/d0/f000", "file"),
        ("photos/d0/f004", "file"),
        ("photos/d0/loop", "dir"),
        ("photos/d1", "dir"),
        ("photos/d1/sub", "dir"),
        ("photos/d1/sub/f001", "file"),
        ("photos/d1/sub/f005", "file"),
        ("photos/d2", "dir"),
        ("photos/d2/f002", "file"),
        ("photos/d2/f006", "file"),
        ("photos/d3", "dir"),
        ("photos/d3/sub", "dir"),
        ("photos/d3/sub/f003", "file"),
        ("photos/d3/sub/f007", "file"),
        ("photos/empty", "dir"),
    ]
    assert sorted(listed) == expected
    seen = {"photos"}
    for path, _ in listed:  # every directory comes before what is in it
        assert str(Path(path).parent) in seen
        seen.add(path)


def converse(share: Share, *messages: Message | bytes, hello: Hello | None = None) -> list[Message]:
    """Say hello and send ``messages`` (bytes go raw) in one write; the replies up to a pause."""
    with socket.create_connection(("127.0.0.1", share.endpoint.port), WAIT) as sock:
        sock.sendall(frame(hello or Hello(token=TOKEN)))
        sock.sendall(b"".join(m if isinstance(m, bytes) else frame(m) for m in messages))
        sock.settimeout(0.5)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    replies: list[Message] = []
    while received:
        length = int.from_bytes(received[:4], "big")
        message = decode(received[4 : 4 + length])
        received = received[4 + length :]
        replies.append(message)
        if isinstance(message, FileHeader):
            received = received[message.length :]
    return replies


def test_a_client_that_names_no_hash_gets_sha256_and_one_that_asks_blake3_gets_it(
    share: Share,
) -> None:
    data = write(share.root / "notes.txt", b"hello, world\n")
    old = converse(share, Get("notes.txt"))
    assert isinstance(old[0], Welcome)
    assert old[0].hash == "sha256"
    assert old[-1] == Done(sha256=hashlib.sha256(data).hexdigest())
    new = converse(share, Get("notes.txt"), hello=Hello(hashes=("blake3", "sha256")))
    assert isinstance(new[0], Welcome)
    assert new[0].hash == "blake3"
    assert new[-1] == Done(blake3=blake3.blake3(data).hexdigest())
    asked = converse(share, Get("notes.txt"), hello=Hello(hashes=("sha256",)))
    assert asked[-1] == Done(sha256=hashlib.sha256(data).hexdigest())


def test_transfers_are_verified_with_blake3_by_default(share: Share, tmp_path: Path) -> None:
    data = write(share.root / "big.bin", os.urandom(3 * 1024 * 1024 + 5))
    with FilesClient.connect(share.endpoint, token=TOKEN, timeout=WAIT) as client:
        assert client.hash == "blake3"
        down = client.download("big.bin", tmp_path / "big.bin")
        up = client.upload(tmp_path / "big.bin", "again.bin")
    assert down.hash == up.hash == "blake3"
    assert down.digest == up.digest == blake3.blake3(data).hexdigest()
    assert (share.root / "again.bin").read_bytes() == data


def test_an_upload_with_the_wrong_blake3_is_refused(share: Share) -> None:
    replies = converse(
        share,
        Put("bad.txt", 3, follows=True),
        b"abc",
        Done(blake3="0" * 64),
        hello=Hello(token=TOKEN, hashes=("blake3",)),
    )
    assert isinstance(replies[-1], Error)
    assert replies[-1].code == "mismatch"
    assert "BLAKE3 mismatch" in replies[-1].message
    assert not (share.root / "bad.txt").exists()


def test_a_get_that_says_what_the_client_has_moves_no_byte_when_it_is_the_same(
    share: Share,
) -> None:
    data = write(share.root / "notes.txt", b"hello\n", mtime=1_700_000_000.5)
    replies = converse(
        share,
        Get("notes.txt", size=len(data), mtime=1_700_000_000.5),
        Get("notes.txt", size=len(data), mtime=1_600_000_000.0),
    )
    assert replies[1:3] == [FileHeader(6, 1_700_000_000.5, 6, 0, same=True), Done()]
    assert replies[3] == FileHeader(6, 1_700_000_000.5, 0, 6)


def test_uploads_sent_with_their_requests_are_answered_in_order(share: Share) -> None:
    write(share.root / "same.txt", b"same", mtime=1_600_000_000)
    replies = converse(
        share,
        Put("a.txt", 3, 1_700_000_000, hash=False, follows=True),
        b"aaa",
        Done(),
        Put("same.txt", 4, 1_600_000_000, hash=False, follows=True),
        b"same",
        Done(),
        Put("../outside", 2, hash=False, follows=True),
        b"xx",
        Done(),
        Put("b.txt", 0, hash=False, follows=True),
        Done(),
    )
    assert [type(reply) for reply in replies] == [Welcome, Ok, Ok, Error, Ok]
    assert replies[2] == Ok(skipped=True)
    assert isinstance(replies[3], Error)
    assert replies[3].code == "bad-path"
    assert (share.root / "a.txt").read_bytes() == b"aaa"
    assert (share.root / "b.txt").read_bytes() == b""


def test_uploads_sent_ahead_without_the_token_are_refused_one_by_one(share: Share) -> None:
    replies = converse(
        share,
        Put("a.txt", 3, follows=True, hash=False),
        b"aaa",
        Done(),
        List(""),
        hello=Hello(),
    )
    assert isinstance(replies[1], Error)
    assert replies[1].code == "unauthorized"
    assert isinstance(replies[2], Listing)  # the connection goes on
    assert not (share.root / "a.txt").exists()


class Recorded(TransferProgress):
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def tree(self, files: int, total: int) -> None:
        self.calls.append(("tree", files, total))

    def skip(self, name: str, size: int) -> None:
        self.calls.append(("skip", name, size))


def test_files_up_to_date_are_skipped_without_a_request(share: Share, tmp_path: Path) -> None:
    made = a_tree(share.root / "photos", files=6)
    with share.connect() as client:
        fetch_tree(client, "photos", tmp_path)
        files = [
            (path, tmp_path / path, entry)
            for path, entry in client.walk("photos")
            if entry.type == "file"
        ]
        progress = Recorded()
        results = list(client.download_many(files, progress=progress))
    assert all(result.skipped for result in results)
    assert progress.calls == [("skip", f"photos/{name}", 1024) for name in sorted(made)]


def test_a_directory_is_not_fetched_as_a_file(share: Share, tmp_path: Path) -> None:
    (share.root / "photos").mkdir()
    local = tmp_path / "local"
    local.mkdir()
    with share.connect() as client, pytest.raises(FilesError) as failed:
        client.download("photos", local / "photos")
    assert failed.value.code == "not-a-file"
    assert not list(local.iterdir())  # no partial file left behind


def test_the_progress_of_a_tree_counts_files_and_bytes_of_the_whole() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_bars(console) as bars:
        bars.tree(3, 300)
        bars.skip("a", 100)
        bars.begin("b", 100, 40)  # resumed: 40 bytes were there already
        bars.advance(60)
        bars.end()
        bars.begin("c", 100, 0)
        bars.advance(50)
        assert isinstance(bars, _RichProgress)
        whole, current = bars.tasks()
        assert (whole.description, whole.completed, whole.total) == ("2 of 3 files", 250, 300)
        assert (current.description, current.completed) == ("c", 50)


def test_put_r_and_get_r_on_the_command_line_say_which_hash_verified_them(
    share: Share, tmp_path: Path
) -> None:
    made = a_tree(tmp_path / "photos", files=12)
    shown = on_a_terminal("put", "-r", tmp_path / "photos", share.endpoint, token=TOKEN)
    assert "photos/d0/f000: sent 1,024 bytes, BLAKE3 verified" in shown
    assert snapshot(share.root / "photos") == snapshot(tmp_path / "photos")
    again = on_a_terminal("put", "-r", tmp_path / "photos", share.endpoint, token=TOKEN)
    assert again.count("up to date") == len(made)
    down = tmp_path / "down"
    shown = on_a_terminal("get", "-r", "--hash", "sha256", share.endpoint, "photos", down)
    assert "photos/d3/sub/f011: received 1,024 bytes, SHA-256 verified" in shown
    assert snapshot(down / "photos") == snapshot(tmp_path / "photos")
    assert succeeds("get", "-r", share.endpoint, "photos", down) == ""
    shown = on_a_terminal("get", "-r", share.endpoint, "photos", down)
    assert shown.count("up to date") == len(made)


class OlderServer(ScriptedFilesServer):
    """A files server as socketeer's were before pipelining and BLAKE3: one request at a time.

    Its welcome offers no ``pipeline`` and names no ``hash``; it serves ``files``
    (name -> bytes, all in one directory) to one connection.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        super().__init__()

    def answer(self, conn: FilesConnection, request: Message) -> bytes:
        if isinstance(request, Hello):
            return conn.send(Welcome(server="socketeer 0.0.9"))
        if isinstance(request, List):
            entries = tuple(Entry(n, "file", len(d), 1.0) for n, d in sorted(self.files.items()))
            return conn.send(Listing(request.path, entries))
        if isinstance(request, Stat):
            data = self.files[request.path]
            return conn.send(StatReply(Entry(request.path, "file", len(data), 1.0)))
        assert isinstance(request, Get)
        data = self.files[request.path]
        header = conn.send(FileHeader(len(data), 1.0, 0, len(data)))
        conn.sent_raw(len(data))
        return header + data + conn.send(Done(hashlib.sha256(data).hexdigest()))


def test_a_server_that_predates_pipelining_and_blake3_is_asked_one_thing_at_a_time(
    tmp_path: Path,
) -> None:
    files = {f"f{i}": os.urandom(100 + i) for i in range(3)}
    older = OlderServer(files)
    with FilesClient.connect(older.endpoint, timeout=WAIT) as client:
        assert (client.hash, client.pipelining) == ("sha256", False)
        listed = [(path, entry) for path, entry in client.walk("") if entry.type == "file"]
        results = list(
            client.download_many([(path, tmp_path / path, entry) for path, entry in listed])
        )
    older.join()
    assert [r.sha256 for r in results] == [hashlib.sha256(d).hexdigest() for d in files.values()]
    assert {path: (tmp_path / path).read_bytes() for path in files} == files
    kinds = [type(request).__name__ for request in older.requests]
    assert kinds == ["Hello", "List", "Stat", "Get", "Stat", "Get", "Stat", "Get"]
    assert not any(isinstance(r, List) and r.recursive for r in older.requests)


def test_small_uploads_sent_together_are_stored_in_one_trip_to_a_thread(
    share: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[object] = []
    real = asyncio.to_thread

    async def counted(function: Callable[..., object], /, *args: object) -> object:
        trips.append(function)
        return await real(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    uploads: list[Message | bytes] = []
    for i in range(20):
        data = f"file {i}\n".encode()
        uploads += [Put(f"f{i:02}.txt", len(data), follows=True), data, Done(sha256=sha(data))]
    replies = converse(share, *uploads)
    assert replies[1:] == [Ok()] * 20
    assert all(
        (share.root / f"f{i:02}.txt").read_bytes() == f"file {i}\n".encode() for i in range(20)
    )
    # One request at a time, every upload was a trip of its own (20).
    assert len(trips) <= 3, f"20 small uploads took {len(trips)} trips to a thread"


def test_replies_to_uploads_stored_together_keep_their_order_and_their_errors(
    share: Share,
) -> None:
    write(share.root / "notes.txt", b"old\n")
    good, bad = b"new\n", b"bad\n"
    replies = converse(
        share,
        Put("a.txt", 4, follows=True),
        good,
        Done(sha256=sha(good)),
        Put("nowhere/b.txt", 4, follows=True),  # no such directory
        bad,
        Done(sha256=sha(bad)),
        Put("c.txt", 4, follows=True),
        bad,
        Done(sha256="0" * 64),  # does not verify
        Get("a.txt"),
        Put("notes.txt", 4, follows=True),
        good,
        Done(sha256=sha(good)),
    )
    assert replies[1] == Ok()
    assert isinstance(replies[2], Error)
    assert replies[2].code == "not-found"
    assert isinstance(replies[3], Error)
    assert replies[3].code == "mismatch"
    assert replies[4] == FileHeader(4, (share.root / "a.txt").stat().st_mtime, 0, 4)
    assert replies[5] == Done(sha256=sha(good))
    assert replies[6] == Ok()
    assert (share.root / "notes.txt").read_bytes() == good
    assert not (share.root / "c.txt").exists()


def test_a_server_that_holds_upload_replies_back_sends_nothing_else_first() -> None:
    conn = FilesConnection(SERVER)
    conn.receive_data(frame(Hello()))
    assert isinstance(conn.next_event(), Hello)
    conn.send(Welcome(server="test", hash="sha256", pipeline=65536))
    conn.receive_data(frame(Put("a", 1, follows=True)) + b"x" + frame(Done()) + frame(Stat("a")))
    for _ in range(3):
        conn.next_event()
    conn.defer_reply()
    assert conn.next_event() == Stat("a")
    with pytest.raises(LocalProtocolError):
        conn.send(StatReply(Entry("a", "file", 1, 0.0)))
    assert decode(conn.deferred_reply(Ok())[4:]) == Ok()
    conn.send(StatReply(Entry("a", "file", 1, 0.0)))
    with pytest.raises(LocalProtocolError):
        conn.deferred_reply(Ok())
