"""Several `serve chat --redis` processes and a real redis-server (Debian's) are one chat.

Each test starts ``redis-server --port N --save '' --appendonly no`` on a free
loopback port and stops it by its PID; the chat servers are real processes,
and the members are plain sockets speaking the nc line protocol, ``socketeer
chat`` processes and WebSockets.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from socketeer import Endpoint
from socketeer.services.files.client import FilesClient
from support import WAIT, ServeProcess, ServerProcess, run_cli, socketeer_command, wait_until
from test_chat_cli import Talker
from test_chat_files import payload as payload  # the fixture: a file to offer
from test_chat_files import upload
from test_chat_server import Member
from test_haproxy import Balancer
from test_haproxy import haproxy as haproxy  # the fixture, for the test behind a balancer
from ws_client import WsClient

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server on a loopback port, with nothing written to disk."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, "redis-server to answer")

    def answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, "redis-server ended"
        return self.command(b"PING") == b"+PONG"

    def command(self, *words: bytes) -> bytes:
        """One command over a fresh connection; its first reply line, or b"" if unreachable."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as conn:
                conn.sendall(b" ".join(words) + b"\r\n")
                reply = b""
                while not reply.endswith(b"\r\n"):
                    data = conn.recv(65536)
                    if not data:
                        break
                    reply += data
                return reply.split(b"\r\n")[0]
        except OSError:
            return b""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


StartChat = Callable[..., ServerProcess]


@pytest.fixture
def chat_node(serve_process: ServeProcess, redis: RedisServer) -> StartChat:
    """Factory: a `serve chat --redis` process on a port of its own."""

    def start(*extra: str, count: int = 1) -> ServerProcess:
        return serve_process(
            "serve", "chat", "127.0.0.1:0", "--redis", redis.url, "--rate", "0", *extra, count=count
        )

    return start


def endpoint(node: ServerProcess) -> Endpoint:
    return node.endpoints[0]


def test_two_servers_with_one_redis_are_one_chat(chat_node: StartChat) -> None:
    one, two = chat_node(), chat_node()
    alice = Member(endpoint(one), "alice")
    bob = Member(endpoint(two), "bob")
    assert alice.expect("bob joined") == ["#lobby -!- bob joined #lobby"]

    alice.say("hello bob")
    assert alice.line() == "#lobby <alice> hello bob"
    assert bob.line() == "#lobby <alice> hello bob"
    bob.say("hi alice")
    assert bob.line() == "#lobby <bob> hi alice"
    assert alice.line() == "#lobby <bob> hi alice"

    bob.say("/msg Alice psst")
    assert bob.line() == "@alice <bob> psst"
    assert alice.line() == "@alice <bob> psst"

    alice.say("/who")
    assert alice.line() == "#lobby -!- 2 in #lobby: alice, bob"
    bob.say("/join dev")
    bob.expect("you joined #dev")
    bob.say("/online")
    assert bob.line() == "- -!- 2 online: alice (#lobby), bob (#lobby, #dev)"
    alice.say("/rooms")
    assert alice.line() == "- -!- rooms: #dev (1), #lobby (2)"

    taken = Member(endpoint(two))
    taken.expect("welcome")
    taken.say("alice")
    assert taken.line() == '- -!- error: the nickname "alice" is taken; choose another'
    taken.say("carol")
    taken.expect("you joined #lobby")
    assert alice.line() == "#lobby -!- carol joined #lobby"

    late = Member(endpoint(one))
    late.expect("welcome")
    late.say("dave")
    past = late.expect("you joined #lobby")
    assert past[1:3] == ["#lobby <alice> hello bob", "#lobby <bob> hi alice"]
    # only on the second server, in #dev:
    bob.say("in dev")
    assert bob.expect("in dev")[-1] == "#dev <bob> in dev"
    late.say("/join dev")  # #dev is new on the first server: its history comes from Redis
    assert late.expect("you joined #dev")[-2:] == [
        "#dev <bob> in dev",
        "#dev -!- you joined #dev; 2 here: bob, dave",
    ]

    bob.say("/quit")
    bob.expect("bye")
    assert alice.expect("bob quit")[-1] == "#lobby -!- bob quit"
    again = Member(endpoint(one))
    again.expect("welcome")
    again.say("bob")
    again.expect("you joined #lobby")


def test_workers_with_redis_are_one_chat(chat_node: StartChat) -> None:
    server = chat_node("--workers", "2")
    members = [Member(endpoint(server), f"m{n}") for n in range(8)]
    members[0].say("/online")
    listing = members[0].expect("online")[-1]
    assert listing.startswith("- -!- 8 online: m0 (#lobby), m1 (#lobby)"), listing
    members[7].say("over the workers")
    for member in members:
        assert member.expect("over the workers")[-1] == "#lobby <m7> over the workers"
    twin = Member(endpoint(server))
    twin.expect("welcome")
    for n in range(8):  # whichever worker it reaches, every nickname is taken
        twin.say(f"m{n}")
        assert twin.line().endswith(f'the nickname "m{n}" is taken; choose another')
    assert server.stop() == 0  # SIGTERM reaches the workers (SIGKILL would orphan them)


def test_redis_restarting_keeps_the_members_talking(
    chat_node: StartChat, redis: RedisServer
) -> None:
    one, two = chat_node(), chat_node()
    alice = Member(endpoint(one), "alice")
    ann = Member(endpoint(one), "ann")
    bob = Member(endpoint(two), "bob")
    alice.expect("bob joined")
    alice.say("before")
    assert bob.expect("before")[-1] == "#lobby <alice> before"

    redis.stop()
    assert alice.expect("degraded")[-1].startswith("- -!- the chat is degraded")
    ann.expect("degraded")
    alice.say("during")
    assert ann.expect("during")[-1] == "#lobby <alice> during"
    assert alice.expect("during")[-1] == "#lobby <alice> during"

    redis.start()
    assert alice.expect("whole again", timeout=WAIT)[-1].startswith("- -!- the chat is whole")
    bob.expect("whole again")
    alice.say("after")
    assert bob.expect("after")[-1] == "#lobby <alice> after"
    bob.say("back")
    assert alice.expect("back")[-1] == "#lobby <bob> back"
    # the nicknames were claimed again: another server refuses them
    twin = Member(endpoint(two))
    twin.expect("welcome")
    twin.say("alice")
    assert twin.line() == '- -!- error: the nickname "alice" is taken; choose another'
    assert "Traceback" not in one.stderr() + two.stderr()


def test_a_killed_server_leaves_no_ghosts_after_the_ttl(chat_node: StartChat) -> None:
    doomed, other = chat_node("--redis-ttl", "1"), chat_node("--redis-ttl", "1")
    ghost = Member(endpoint(doomed), "ghost")
    bob = Member(endpoint(other), "bob")
    ghost.expect("bob joined")
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(WAIT)

    heir = Member(endpoint(other))
    heir.expect("welcome")
    deadline = time.monotonic() + WAIT
    while True:  # taken until the dead server's claim expires, within the TTL
        heir.say("ghost")
        if heir.line() == "- -!- you are now known as ghost":
            break
        assert time.monotonic() < deadline, "the killed server's nickname stayed taken"
        time.sleep(0.2)
    heir.expect("you joined #lobby")
    bob.say("/online")
    assert bob.expect("online")[-1] == "- -!- 2 online: bob (#lobby), ghost (#lobby)"


def test_redis_out_of_reach_at_start_is_a_degraded_chat_not_a_failure(
    serve_process: ServeProcess,
) -> None:
    node = serve_process(
        "serve", "chat", "127.0.0.1:0", "--redis", f"redis://127.0.0.1:{free_port()}/0"
    )
    alice = Member(endpoint(node), "alice")
    bob = Member(endpoint(node), "bob")
    alice.expect("bob joined")
    bob.say("alone here")
    assert alice.line() == "#lobby <bob> alone here"


def test_redis_usage_errors_are_one_line() -> None:
    result = run_cli("serve", "chat", "127.0.0.1:0", "--redis", "http://localhost")
    assert result.returncode == 2
    assert "redis://" in result.stderr.decode()
    result = run_cli("serve", "chat", "127.0.0.1:0", "--workers", "2")
    assert result.returncode == 2
    assert "--redis" in result.stderr.decode()


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")
def test_two_nodes_behind_haproxy_are_one_chat(chat_node: StartChat, haproxy: Balancer) -> None:
    one, two = chat_node("--proxy-protocol"), chat_node("--proxy-protocol")
    front = haproxy([one, two])  # round robin: one member lands on each node
    where = Endpoint("tcp", "127.0.0.1", front)
    alice = Member(where, "alice")
    bob = Member(where, "bob")
    assert alice.expect("bob joined") == ["#lobby -!- bob joined #lobby"]
    bob.say("hello alice")
    assert bob.line() == "#lobby <bob> hello alice"
    assert alice.line() == "#lobby <bob> hello alice"
    alice.say("/online")
    assert alice.line().startswith("- -!- 2 online: alice (#lobby), bob (#lobby)")
    wait_until(
        lambda: all("connection from 127.0.0.1:" in node.stderr() for node in (one, two)),
        "each node to log the member it took, by the member's address",
    )


def files_node(chat_node: StartChat, box: Path, *extra: str) -> ServerProcess:
    """A node with a drop box of its own in ``box``."""
    return chat_node("--files", "127.0.0.1:0", "--files-dir", str(box), *extra)


#: What an offer tells its recipient: the offer's id, and the command that fetches it.
OFFERED = re.compile(r"/accept (\S+) or /decline .* fetch it with: socketeer get (\S+) (\S+)$")


def fetch(member: Member, path: Path) -> tuple[str, str]:
    """``member`` is offered a file and fetches it as the offer says: the offer's id and
    where it was fetched from."""
    told = member.expect("offers you")[-1]
    found = OFFERED.search(told)
    assert found, told
    offer_id, files, remote = found.groups()
    with FilesClient.connect(files, timeout=WAIT) as client:
        client.download(remote, path)
    return offer_id, files


def test_a_file_offered_to_a_member_of_another_node_is_fetched_from_the_senders_node(
    chat_node: StartChat, tmp_path: Path, payload: Path
) -> None:
    one = files_node(chat_node, tmp_path / "box1")
    two = files_node(chat_node, tmp_path / "box2")
    alice = Member(endpoint(one), "alice")
    bob = Member(endpoint(two), "bob")
    alice.expect("bob joined")
    offer_id, files, _ = upload(alice, "bob", payload)
    fetched, where = fetch(bob, tmp_path / "copy")
    assert (fetched, where) == (offer_id, files)  # from alice's node, by an id of the chat
    assert (tmp_path / "copy").read_bytes() == payload.read_bytes()
    assert list((tmp_path / "box1").iterdir())
    assert not list((tmp_path / "box2").iterdir())
    bob.say("/accept")  # the latest offer: held on the other node
    assert bob.expect("fetching")[-1].startswith(f"- -!- offer {offer_id}: fetching report.bin")
    alice.expect(f"offer {offer_id}: bob accepted report.bin")
    bob.say(f"/received {offer_id}")
    bob.expect(f"offer {offer_id}: report.bin is yours; it is gone from the drop box")
    alice.expect(f"offer {offer_id}: bob received report.bin")
    wait_until(lambda: not list((tmp_path / "box1").iterdir()), "the drop box to be emptied")

    second, _, _ = upload(alice, "bob", payload)
    assert second.split("-")[0] == offer_id.split("-")[0]
    assert second != offer_id
    bob.expect("offers you")
    bob.say("/decline")
    bob.expect(f"offer {second}: declined report.bin")
    alice.expect(f"offer {second}: bob declined report.bin")
    bob.say(f"/accept {second}")
    assert bob.expect("no offer")[-1] == f"- -!- error: there is no offer {second} for you"
    assert "Traceback" not in one.stderr() + two.stderr()


def test_an_offer_expires_for_its_recipient_when_the_senders_node_dies(
    chat_node: StartChat, tmp_path: Path, payload: Path
) -> None:
    doomed = files_node(chat_node, tmp_path / "box1", "--redis-ttl", "1")
    other = chat_node("--redis-ttl", "1")  # no drop box: it may still be offered files
    alice = Member(endpoint(doomed), "alice")
    bob = Member(endpoint(other), "bob")
    alice.expect("bob joined")
    offer_id, _, _ = upload(alice, "bob", payload)
    bob.expect("offers you")
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(WAIT)
    assert bob.expect("expired")[-1] == (
        f"- -!- offer {offer_id}: report.bin from alice expired (the server it was on is gone)"
    )
    bob.say("/accept")
    assert bob.line() == "- -!- error: there is no offer for you"


def test_workers_and_a_drop_box_are_refused_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "chat", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1/0", "--workers", "2",
        "--files", "127.0.0.1:0", "--files-dir", str(tmp_path / "box"),
    )  # fmt: skip
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "--files" in err
    assert "workers cannot share a drop box" in err
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")
def test_nc_terminal_and_websocket_members_behind_haproxy_are_one_chat_and_send_files(
    chat_node: StartChat, haproxy: Balancer, tmp_path: Path, payload: Path
) -> None:
    one = files_node(chat_node, tmp_path / "box1", "--proxy-protocol")
    two = files_node(chat_node, tmp_path / "box2", "--proxy-protocol")
    # the fewest connections first: the terminal goes to the node nc is not on, and
    # the WebSocket, to either, shares a node with one of them
    front = haproxy([one, two], balance="leastconn")
    alice = Member(Endpoint("tcp", "127.0.0.1", front), "alice")
    downloads = tmp_path / "downloads"
    command = ["chat", f"127.0.0.1:{front}", "-n", "carol", "--plain", "--downloads"]
    carol = Talker(socketeer_command(*command, str(downloads)))
    web: WsClient | None = None
    try:
        carol.expect("you joined #lobby")
        alice.expect("carol joined")
        web = WsClient("127.0.0.1", front)
        web.expect("choose a nickname")
        web.send("wendy")
        assert web.expect("you joined #lobby")[-1].endswith("3 here: alice, carol, wendy")

        alice.say("hello from nc")
        assert carol.expect("hello from nc")[-1] == "#lobby <alice> hello from nc"
        assert web.expect("hello from nc")[-1].endswith("#lobby <alice> hello from nc")
        carol.say("hello from a terminal")
        assert alice.expect("from a terminal")[-1] == "#lobby <carol> hello from a terminal"
        assert web.expect("from a terminal")[-1].endswith("#lobby <carol> hello from a terminal")
        web.send("hello from a browser")
        assert alice.expect("from a browser")[-1] == "#lobby <wendy> hello from a browser"
        assert carol.expect("from a browser")[-1] == "#lobby <wendy> hello from a browser"
        web.send("/msg carol psst")
        assert carol.expect("psst")[-1] == "@carol <wendy> psst"

        # the terminal's /send, to nc on the other node, fetched as the offer says
        carol.say(f"/send alice {payload}")
        theirs, files = fetch(alice, tmp_path / "from-carol")
        assert (tmp_path / "from-carol").read_bytes() == payload.read_bytes()
        alice.say(f"/received {theirs}")
        alice.expect("is yours")
        assert (
            carol.expect("alice received")[-1] == f"- -!- offer {theirs}: alice received report.bin"
        )

        # nc's offer, to the terminal on the other node: /accept fetches and verifies it
        ours, mine, _ = upload(alice, "carol", payload)
        assert ours.split("-")[0] != theirs.split("-")[0], "both members on one node"
        assert mine != files  # each node's drop box serves its own members' files
        carol.expect("alice offers you")
        carol.say("/accept")
        assert carol.expect("saved", carol.proc.stderr)[-1].endswith("(SHA-256 verified)")
        alice.expect(f"offer {ours}: carol received report.bin")
        assert (downloads / "report.bin").read_bytes() == payload.read_bytes()
        wait_until(
            lambda: not [*(tmp_path / "box1").iterdir(), *(tmp_path / "box2").iterdir()],
            "both drop boxes to be emptied",
        )
    finally:
        carol.stop()
        if web is not None:
            web.shut()
    assert "Traceback" not in one.stderr() + two.stderr()
