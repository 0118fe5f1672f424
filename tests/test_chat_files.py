"""Files between chat members, over loopback: offered, uploaded to the drop box, fetched.

The chat server runs a drop box (a files share) beside the chat; the bytes go
through it, resumable and verified, never through the chat's lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from socketeer import Endpoint, parse_endpoint
from socketeer.services.chat import ChatService, ChatSettings
from socketeer.services.chat.dropbox import DropBox
from socketeer.services.chat.offers import OfferLimits
from socketeer.services.files.client import FilesClient, FilesError
from support import WAIT, ServeInThread, socketeer_command, wait_until
from test_chat_server import Member, close_members  # noqa: F401  (the fixture closes members)

pytestmark = pytest.mark.usefixtures("no_errors_logged")

OFFER = re.compile(r"offer (\S+): upload .* socketeer put FILE (\S+) (\S+) --user (\S+)")


def serve(serve_in_thread: ServeInThread, box: Path, **limits: object) -> tuple[Endpoint, DropBox]:
    dropbox = DropBox(box, parse_endpoint("127.0.0.1:0"), OfferLimits(**limits))  # type: ignore[arg-type]
    service = ChatService(ChatSettings(rate=0), dropbox=dropbox)
    _, (endpoint,) = serve_in_thread(service)
    return endpoint, dropbox


def left_in(box: Path) -> list[str]:
    """Every file and directory in the drop box (one the server removes meanwhile is gone)."""
    found = []
    for directory, names, files in os.walk(box):  # skips what vanishes while it walks
        found += [str(Path(directory, name).relative_to(box)) for name in names + files]
    return sorted(found)


def offer(alice: Member, to: str, path: Path) -> tuple[str, str, str, str, str]:
    """alice offers ``path`` (nc style): the offer's id, drop box, remote path, user and token."""
    alice.say(f"/offer {to} {path.stat().st_size} {path.name}")
    line = alice.expect("socketeer put")[-1]
    match = OFFER.search(line)
    assert match, line
    token = re.search(r"SOCKETEER_PASSWORD=(\S+)", line)
    assert token
    offer_id, files, remote, user = match.groups()
    return offer_id, files, remote, user, token.group(1)


def upload(alice: Member, to: str, path: Path) -> tuple[str, str, str]:
    """alice offers ``path`` and uploads it as told; the offer's id, drop box and path."""
    offer_id, files, remote, user, token = offer(alice, to, path)
    with FilesClient.connect(files, user=user, password=token, timeout=WAIT) as client:
        client.upload(path, remote)
    alice.say(f"/offered {offer_id}")
    alice.expect(f"offer {offer_id}: {to} is offered {path.name}")
    return offer_id, files, remote


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "report.bin"
    path.write_bytes(os.urandom(300_000))
    return path


def test_an_nc_member_is_offered_a_file_and_fetches_it_with_the_command_shown(
    serve_in_thread: ServeInThread, tmp_path: Path, payload: Path
) -> None:
    box = tmp_path / "box"
    endpoint, _ = serve(serve_in_thread, box)
    alice, bob = Member(endpoint, "alice"), Member(endpoint, "bob")
    offer_id, _, _ = upload(alice, "bob", payload)
    told = bob.expect("offers you")[-1]
    assert f"alice offers you report.bin (293.0 KiB): /accept {offer_id} or /decline" in told
    command = told.split("fetch it with: ")[1].split()
    assert command[:2] == ["socketeer", "get"]
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    result = subprocess.run(
        [*socketeer_command(*command[1:]), str(fetched / "copy"), "-q"],
        capture_output=True,
        timeout=WAIT * 3,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (fetched / "copy").read_bytes() == payload.read_bytes()
    bob.say(f"/received {offer_id}")
    bob.expect("is yours; it is gone from the drop box")
    alice.expect(f"offer {offer_id}: bob received report.bin")
    wait_until(lambda: left_in(box) == [], "the drop box to be emptied")


def test_the_drop_box_lets_no_one_list_it_nor_read_an_offer_before_it_is_offered(
    serve_in_thread: ServeInThread, tmp_path: Path, payload: Path
) -> None:
    endpoint, _ = serve(serve_in_thread, tmp_path / "box")
    alice, _bob = Member(endpoint, "alice"), Member(endpoint, "bob")
    offer_id, files, remote, user, token = offer(alice, "bob", payload)
    with FilesClient.connect(files, timeout=WAIT) as anyone:
        with pytest.raises(FilesError, match="anonymous users may not read /"):
            anyone.list("")
        with pytest.raises(FilesError, match="may not read"):
            anyone.stat(remote)
    with FilesClient.connect(files, user=user, password=token, timeout=WAIT) as sender:
        with pytest.raises(FilesError, match="may not write"):
            sender.upload(payload, remote + "-other")
        small = tmp_path / "small"
        small.write_bytes(b"not the size announced")
        with pytest.raises(FilesError, match=f"offer {offer_id} is for 300000 bytes, not 22"):
            sender.upload(small, remote)
    with pytest.raises(FilesError, match="wrong user name or password"):
        FilesClient.connect(files, user=user, password="guess", timeout=WAIT)


def test_declined_and_expired_offers_leave_nothing_on_disk(
    serve_in_thread: ServeInThread, tmp_path: Path, payload: Path
) -> None:
    box = tmp_path / "box"
    endpoint, _ = serve(serve_in_thread, box, ttl=1.0)
    alice, bob = Member(endpoint, "alice"), Member(endpoint, "bob")
    offer_id, _, _ = upload(alice, "bob", payload)
    bob.expect("offers you")
    assert left_in(box)  # the file waits in the drop box
    bob.say("/decline")
    bob.expect(f"offer {offer_id}: declined report.bin")
    alice.expect(f"offer {offer_id}: bob declined report.bin")
    wait_until(lambda: left_in(box) == [], "the declined offer's file to be deleted")

    offer_id, files, remote = upload(alice, "bob", payload)
    bob.expect("offers you")
    bob.expect(f"offer {offer_id}: report.bin from alice expired", timeout=WAIT)
    alice.expect(f"offer {offer_id}: report.bin for bob expired")
    wait_until(lambda: left_in(box) == [], "the expired offer's file to be deleted")
    with FilesClient.connect(files, timeout=WAIT) as anyone, pytest.raises(FilesError):
        anyone.stat(remote)
    bob.say(f"/accept {offer_id}")
    assert bob.expect("no offer")[-1] == f"- -!- error: there is no offer {offer_id} for you"

    offer(alice, "bob", payload)  # never uploaded: expires too, and its directory goes
    alice.expect("expired before it was offered", timeout=WAIT)
    wait_until(lambda: left_in(box) == [], "the unfinished offer's directory to be deleted")


def test_offers_past_the_limits_and_to_members_not_online_are_refused(
    serve_in_thread: ServeInThread, tmp_path: Path, payload: Path
) -> None:
    box = tmp_path / "box"
    endpoint, _ = serve(serve_in_thread, box, max_size=100_000, max_pending=1)
    alice, _bob = Member(endpoint, "alice"), Member(endpoint, "bob")
    alice.say(f"/offer bob {payload.stat().st_size} report.bin")
    assert alice.expect("error")[-1] == (
        "- -!- error: report.bin is 293.0 KiB; an offer may hold at most 97.7 KiB"
    )
    alice.say("/offer carol 10 notes.txt")
    assert alice.expect("error")[-1] == (
        '- -!- error: no one called "carol" is online; files go to members who are online'
    )
    alice.say("/offer bob 10 ../escape")
    alice.expect('error: "../escape": a file name holds no / or \\')
    alice.say("/offer bob 10 notes.txt")
    alice.expect("socketeer put")
    alice.say("/offer bob 10 more.txt")
    alice.expect("error: you have 1 offers pending already")
    assert left_in(box) == [next(iter(left_in(box)))]  # one offer's directory, nothing more


def test_a_chat_without_a_drop_box_says_so(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(ChatService(ChatSettings(rate=0)))
    alice = Member(endpoint, "alice")
    alice.say("/accept")
    alice.expect("error: this chat has no drop box for files (serve chat --files ENDPOINT)")


def chat_client(endpoint: Endpoint, nick: str, downloads: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        socketeer_command(
            "chat", str(endpoint), "--nick", nick, "--plain", "--downloads", str(downloads)
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_until(process: subprocess.Popen[bytes], fragment: str) -> str:
    """Lines of ``process``'s stdout up to the one holding ``fragment``."""
    assert process.stdout is not None
    deadline = time.monotonic() + WAIT
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        seen.append(line)
        if fragment in line:
            return line
    raise AssertionError(f"{fragment!r} not seen in {seen}")


def test_terminal_clients_send_and_accept_a_file_byte_for_byte(
    serve_in_thread: ServeInThread, tmp_path: Path, payload: Path
) -> None:
    box = tmp_path / "box"
    endpoint, _ = serve(serve_in_thread, box)
    downloads = tmp_path / "downloads"
    bob = chat_client(endpoint, "bob", downloads)
    alice = chat_client(endpoint, "alice", tmp_path)
    try:
        read_until(bob, "you joined #lobby")
        read_until(alice, "you joined #lobby")
        assert alice.stdin is not None
        assert bob.stdin is not None
        alice.stdin.write(f"/send bob {payload}\n".encode())
        alice.stdin.close()  # the client uploads, offers, then quits
        offered = read_until(bob, "offers you")
        assert "alice offers you report.bin (293.0 KiB)" in offered
        bob.stdin.write(b"/accept\n")
        bob.stdin.close()  # the client fetches, verifies, says it has it, then quits
        assert bob.wait(WAIT) == 0
        assert alice.wait(WAIT) == 0
        assert bob.stderr is not None
        status = bob.stderr.read().decode()
        assert "(SHA-256 verified)" in status, status
    finally:
        for process in (alice, bob):
            if process.poll() is None:
                process.kill()
                process.wait(WAIT)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    assert (downloads / "report.bin").read_bytes() == payload.read_bytes()
    wait_until(lambda: left_in(box) == [], "the received file to leave the drop box")
