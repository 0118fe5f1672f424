"""Several `serve chat --redis` processes and a real redis-server (Debian's) are one chat.

Each test starts ``redis-server --port N --save '' --appendonly no`` on a free
loopback port and stops it by its PID; the chat servers are real processes,
and the members are plain sockets speaking the nc line protocol.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from socketeer import Endpoint
from support import WAIT, ServeProcess, ServerProcess, run_cli, wait_until
from test_chat_server import Member
from test_haproxy import Balancer
from test_haproxy import haproxy as haproxy  # the fixture, for the test behind a balancer

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
