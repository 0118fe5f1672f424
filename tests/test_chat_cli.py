"""``socketeer serve chat`` and ``socketeer chat`` as people run them: nc, pipes, exit codes."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest

from support import WAIT, ServeProcess, read_line, recv_all, run_cli, socketeer_command

needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")


class Talker:
    """A process whose stdin we type into and whose stdout lines we read."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, fragment: str, stream: IO[bytes] | None = None) -> list[str]:
        """Lines (without their time) up to the first that holds ``fragment``."""
        stream = stream or self.proc.stdout
        assert stream is not None
        deadline = time.monotonic() + WAIT
        seen: list[str] = []
        while not seen or fragment not in seen[-1]:
            line = read_line(stream, deadline)
            if not line:
                raise AssertionError(f"ended before {fragment!r}; saw {seen}")
            seen.append(line.decode().rstrip("\n"))
        return [line[9:] if line[2:3] == ":" else line for line in seen]

    def end_input(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def talkers() -> Iterator[list[Talker]]:
    started: list[Talker] = []
    yield started
    for talker in started:
        talker.stop()


def one_line_error(result: subprocess.CompletedProcess[bytes], code: int, text: str) -> None:
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.count("\n") == 1, err
    assert err.startswith("socketeer: error: ")
    assert text in err, err


@needs_nc
def test_two_nc_sessions_and_a_socketeer_client_talk_in_one_room(
    serve_process: ServeProcess, talkers: list[Talker]
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0")
    port = str(server.endpoints[0].port)
    alice = Talker(["nc", "-N", "127.0.0.1", port])
    talkers.append(alice)
    alice.expect("choose a nickname")
    alice.say("alice")
    alice.expect("you joined #lobby")
    bob = Talker(["nc", "-N", "127.0.0.1", port])
    talkers.append(bob)
    bob.expect("choose a nickname")
    bob.say("/nick bob")
    bob.expect("you joined #lobby")
    carol = Talker(socketeer_command("chat", f"127.0.0.1:{port}", "--nick", "carol"))
    talkers.append(carol)
    assert carol.expect("you joined") == [
        "- -!- you are now known as carol",
        "#lobby -!- you joined #lobby; 3 here: alice, bob, carol",
    ]
    assert alice.expect("carol joined") == [
        "#lobby -!- bob joined #lobby",
        "#lobby -!- carol joined #lobby",
    ]
    assert bob.expect("carol joined") == ["#lobby -!- carol joined #lobby"]

    for speaker, text, seen in (
        (alice, "hi from nc", "#lobby <alice> hi from nc"),
        (carol, "hello from socketeer chat", "#lobby <carol> hello from socketeer chat"),
        (bob, "/me waves", "#lobby * bob waves"),
    ):
        speaker.say(text)
        for talker in (alice, bob, carol):
            assert talker.expect(seen) == [seen]
    carol.say("/msg bob just for you")
    assert bob.expect("just for you") == ["@bob <carol> just for you"]

    assert carol.end_input() == 0, "the end of input leaves the chat"
    assert alice.expect("carol") == ["#lobby -!- carol quit"]
    assert bob.end_input() == 0
    assert alice.expect("bob") == ["#lobby -!- bob disconnected"]


def test_chat_client_says_quit_and_leaves(
    serve_process: ServeProcess, talkers: list[Talker]
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0", "--room", "Hall")
    endpoint = str(server.endpoints[0])
    carol = Talker(socketeer_command("chat", endpoint, "-n", "carol"))
    talkers.append(carol)
    carol.expect("you joined #hall")
    dave = Talker(socketeer_command("chat", endpoint, "-n", "dave"))
    talkers.append(dave)
    dave.expect("you joined #hall")
    dave.say("/quit see you")
    assert dave.proc.wait(WAIT) == 0
    assert carol.expect("dave quit") == [
        "#hall -!- dave joined #hall",
        "#hall -!- dave quit (see you)",
    ]


def test_a_taken_nick_gets_an_underscore_from_the_client(
    serve_process: ServeProcess, talkers: list[Talker]
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0")
    endpoint = str(server.endpoints[0])
    first = Talker(socketeer_command("chat", endpoint, "-n", "erin"))
    talkers.append(first)
    first.expect("you joined")
    second = Talker(socketeer_command("chat", endpoint, "-n", "erin"))
    talkers.append(second)
    lines = second.expect("you joined")
    assert '- -!- error: the nickname "erin" is taken; choose another' in lines
    assert "- -!- you are now known as erin_" in lines


def test_the_client_exits_1_when_the_connection_drops_without_reconnect(
    serve_process: ServeProcess, talkers: list[Talker]
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0", "--grace", "0")
    client = Talker(
        socketeer_command("chat", str(server.endpoints[0]), "-n", "x", "--no-reconnect")
    )
    talkers.append(client)
    client.expect("you joined")
    server.stop()
    assert client.expect("shutting down") == ["- -!- error: server is shutting down"]
    assert client.proc.wait(WAIT) == 1
    assert client.proc.stderr is not None
    err = client.proc.stderr.read().decode()
    assert err.endswith(
        "socketeer: error: connection lost: 127.0.0.1:"
        f"{server.endpoints[0].port} closed the connection\n"
    )
    assert "Traceback" not in err


def test_the_client_reports_a_drop_and_reconnects(
    serve_process: ServeProcess, talkers: list[Talker]
) -> None:
    first = serve_process("serve", "chat", "127.0.0.1:0", "--grace", "0")
    endpoint = str(first.endpoints[0])
    client = Talker(socketeer_command("chat", endpoint, "-n", "fay"))
    talkers.append(client)
    client.expect("you joined")
    client.say("/join den")
    client.expect("you joined #den")
    first.stop()
    assert client.proc.stderr is not None
    lost = client.expect("connection lost", client.proc.stderr)[-1]
    assert lost.startswith(
        f"-- connection lost: {endpoint} closed the connection; reconnecting in "
    )
    serve_process("serve", "chat", endpoint, "--grace", "0")
    assert client.expect("-- connected", client.proc.stderr)[-1] == f"-- connected to {endpoint}"
    assert client.expect("you joined #den")[-1] == "#den -!- you joined #den; 1 here: fay"


def test_usage_errors_are_one_line_exit_2(tmp_path: object) -> None:
    one_line_error(run_cli("serve", "chat", "--workers", "2"), 2, "one process")
    one_line_error(run_cli("serve", "chat", "udp://127.0.0.1:0"), 2, "does not run over UDP")
    one_line_error(run_cli("serve", "chat", "--room", "no room"), 2, "default room")
    one_line_error(run_cli("serve", "chat", "--rate", "-1"), 2, "--rate")
    one_line_error(run_cli("serve", "chat", "--max-queue", "lots"), 2, "is not a size")
    one_line_error(run_cli("chat", "127.0.0.1:1", "--nick", "two words"), 2, "cannot be a nickname")
    one_line_error(run_cli("chat", "udp://127.0.0.1:1", "-n", "x"), 2, "TCP or Unix")
    one_line_error(run_cli("chat", "nowhere", "-n", "x"), 2, "expected HOST:PORT")


def test_a_state_directory_that_cannot_be_used_is_one_line_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    one_line_error(
        run_cli("serve", "chat", "127.0.0.1:0", "--state", str(blocker / "chat")),
        1,
        "cannot keep the chat's state in",
    )


def test_connection_refused_is_exit_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = run_cli("chat", f"127.0.0.1:{port}", "-n", "x")
    one_line_error(result, 1, f"cannot connect to 127.0.0.1:{port}: connection refused")


def test_serve_chat_stops_on_sigint_and_logs_members(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0", "--grace", "0")
    with socket.create_connection(("127.0.0.1", server.endpoints[0].port), timeout=WAIT) as sock:
        assert sock.recv(1000).endswith(b"(/help lists the commands)\n")
        assert server.stop(signal.SIGINT) == 0
    assert "connection from 127.0.0.1:" in server.stderr()


SEEDS = Path(__file__).resolve().parent / "seeds"


@pytest.fixture
def seed_server() -> Iterator[Callable[[str], int]]:
    """Factory: start a seed server program, return its port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> int:
        proc = subprocess.Popen(
            [sys.executable, str(SEEDS / name)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        assert proc.stdout is not None
        return int(read_line(proc.stdout, time.monotonic() + WAIT))

    yield start
    for proc in started:
        proc.kill()
        proc.wait(WAIT)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(
    ("server", "said"),
    [
        (["greet"], "it said 'welcome!'"),
        (["echo"], "it said '/format json'"),
        (["files", "{share}"], "it said \"error: path '/format json' is absolute;"),
        ("greet_server.py", "it said 'welcome!"),
        ("tcp_server.py", "it said 'hi'"),
    ],
)
def test_a_server_that_is_not_a_chat_server_is_named_once_and_not_retried(
    server: list[str] | str,
    said: str,
    serve_process: ServeProcess,
    seed_server: Callable[[str], int],
    tmp_path: Path,
) -> None:
    if isinstance(server, str):
        endpoint = f"127.0.0.1:{seed_server(server)}"
    else:
        args = [arg.format(share=tmp_path) for arg in server]
        endpoint = str(serve_process("serve", *args, "127.0.0.1:0").endpoints[0])
    started = time.monotonic()
    result = run_cli("chat", endpoint, "-n", "x")
    one_line_error(result, 1, f"{endpoint} is not a chat server ({said}")
    assert time.monotonic() - started < WAIT / 2


def hang_up(listener: socket.socket) -> None:
    """Accept one connection and end it without a word (reading what comes, so no reset)."""
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(WAIT)
        conn.shutdown(socket.SHUT_WR)
        recv_all(conn)


def test_a_server_that_says_nothing_or_hangs_up_is_not_a_chat_server() -> None:
    with socket.socket() as silent, socket.socket() as rude:
        for listener in (silent, rude):
            listener.bind(("127.0.0.1", 0))
            listener.listen()
        silent_at = f"127.0.0.1:{silent.getsockname()[1]}"
        result = run_cli("chat", silent_at, "-n", "x", "--timeout", "0.5")
        one_line_error(
            result, 1, f"{silent_at} is not a chat server (it said nothing within 0.5 seconds)"
        )
        rude_at = f"127.0.0.1:{rude.getsockname()[1]}"
        rude.settimeout(WAIT)
        with ThreadPoolExecutor(1) as pool:
            hanging_up = pool.submit(hang_up, rude)
            result = run_cli("chat", rude_at, "-n", "x")
            hanging_up.result(WAIT)
        one_line_error(
            result, 1, f"{rude_at} is not a chat server (it closed the connection without answer"
        )


def test_piped_input_is_said_and_what_the_server_answers_is_printed_up_to_its_bye(
    serve_process: ServeProcess,
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0")
    result = run_cli("chat", str(server.endpoints[0]), "-n", "gil", input=b"hello, everyone\n")
    assert result.returncode == 0, result.stderr.decode()
    shown = [line[9:] for line in result.stdout.decode().splitlines()]
    assert shown[-3:] == [
        "#lobby -!- you joined #lobby; 1 here: gil",
        "#lobby <gil> hello, everyone",
        "- -!- bye",
    ]


def test_piped_lines_all_come_back_before_the_client_exits(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0", "--rate", "20", "--burst", "3")
    lines = "".join(f"line {n}\n" for n in range(15)).encode()
    result = subprocess.run(
        socketeer_command("chat", str(server.endpoints[0]), "--nick", "piper"),
        input=lines,
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shown = [line[9:] for line in result.stdout.decode().splitlines()]
    assert [line for line in shown if "<piper>" in line] == [
        f"#lobby <piper> line {n}" for n in range(15)
    ], "none dropped by the rate limit"
    assert shown[-1] == "- -!- bye"
    assert "welcome" not in result.stdout.decode(), "--nick answers the prompt for a nickname"
