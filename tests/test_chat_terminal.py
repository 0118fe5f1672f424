"""The terminal client as a person uses it, driven in tmux: send-keys in, capture-pane out."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from socketeer import Endpoint
from support import WAIT, ServeProcess, socketeer_command

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")

ROWS = 14


class Terminal:
    """A tmux server of our own (its own socket) running one command in a pane."""

    def __init__(self, socket_path: Path) -> None:
        self._socket = str(socket_path)
        self._pid: int | None = None

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-S", self._socket, *args],
            capture_output=True,
            timeout=WAIT,
            check=True,
        )
        return result.stdout.decode()

    def start(self, command: list[str]) -> None:
        # The pane stays open after the command, showing its exit status.
        shell = f"{shlex.join(command)}; echo exit status $?; sleep 60"
        self.tmux("new-session", "-d", "-s", "chat", "-x", "90", "-y", str(ROWS), shell)
        self._pid = int(self.tmux("display-message", "-p", "#{pid}").strip())

    def type(self, text: str, enter: bool = True) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)
        if enter:
            self.keys("Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def screen(self, colours: bool = False) -> list[str]:
        args = ["capture-pane", "-p", "-t", "chat", *(["-e"] if colours else [])]
        return self.tmux(*args).rstrip("\n").split("\n")

    def wait_for(self, check: Callable[[list[str]], bool], what: str) -> list[str]:
        """Poll the screen until ``check`` holds; fail after WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                shown = "\n".join(screen)
                raise AssertionError(f"screen never showed {what}:\n{shown}")
            time.sleep(0.05)

    def wait_text(self, text: str) -> list[str]:
        return self.wait_for(lambda screen: any(text in line for line in screen), repr(text))

    def input_line(self) -> str:
        """The last line with anything on it: where the cursor waits for input."""
        return [line for line in self.screen() if line.strip()][-1]

    def stop(self) -> None:
        if self._pid is not None:  # the tmux server we started, and with it the pane
            try:
                os.kill(self._pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and _alive(self._pid):
                time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path / "tmux.sock")
    yield term
    term.stop()


class Member:
    """Someone else in the room, over a plain socket."""

    def __init__(self, endpoint: Endpoint, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", endpoint.port), timeout=WAIT)
        self.file = self.sock.makefile("rb")
        self.say(nick)
        self.expect("you joined")

    def say(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def expect(self, fragment: str) -> str:
        while True:
            line = self.file.readline().decode()
            assert line, f"closed before {fragment!r}"
            if fragment in line:
                return line[9:].rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        member.close()


def client(endpoint: Endpoint, nick: str) -> list[str]:
    return socketeer_command("chat", str(endpoint), "--nick", nick)


def test_typing_scrolling_history_colours_and_ctrl_d(
    serve_process: ServeProcess, terminal: Terminal, members: list[Member]
) -> None:
    (endpoint,) = serve_process("serve", "chat", "127.0.0.1:0", "--burst", "50").endpoints
    bob = Member(endpoint, "bob")
    members.append(bob)
    terminal.start(client(endpoint, "alice"))
    terminal.wait_text("you joined #lobby; 2 here: alice, bob")
    terminal.wait_for(lambda _: terminal.input_line() == "#lobby alice>", "the input line")

    terminal.type("hello from tmux")
    assert bob.expect("hello from tmux") == "#lobby <alice> hello from tmux"
    screen = terminal.wait_text("#lobby <alice> hello from tmux")
    shown = [line for line in screen if "hello from tmux" in line]
    assert len(shown) == 1, f"what was typed is shown once, as the server sent it: {shown}"

    # Half a line typed, then many lines arrive: they scroll above it, it stays.
    terminal.type("half typed", enter=False)
    terminal.wait_for(lambda _: terminal.input_line() == "#lobby alice> half typed", "typing")
    for number in range(ROWS + 2):
        bob.say(f"line {number}")
    screen = terminal.wait_text(f"#lobby <bob> line {ROWS + 1}")
    assert not any(line.endswith("<bob> line 0") for line in screen), "old lines scroll away"
    # Once the redraw after the last line is done, the half-typed line is still there.
    terminal.wait_for(
        lambda _: terminal.input_line() == "#lobby alice> half typed", "the typed line to stay"
    )
    assert bob.expect(f"line {ROWS + 1}") == f"#lobby <bob> line {ROWS + 1}"

    coloured = next(line for line in terminal.screen(colours=True) if "<bob>" in line)
    assert "\x1b[" in coloured.split("<bob>")[0], "names are shown in colour"

    # History: clear the line, recall the last line sent, send it again.
    terminal.keys("C-u")
    terminal.wait_for(lambda _: terminal.input_line() == "#lobby alice>", "a cleared line")
    terminal.keys("Up")
    terminal.wait_for(lambda _: terminal.input_line() == "#lobby alice> hello from tmux", "Up")
    terminal.keys("Enter")
    assert bob.expect("hello from tmux") == "#lobby <alice> hello from tmux"

    terminal.wait_for(lambda _: terminal.input_line() == "#lobby alice>", "a new input line")
    terminal.keys("C-d")
    terminal.wait_text("exit status 0")
    assert bob.expect("alice") == "#lobby -!- alice quit"


def test_ctrl_c_leaves_with_status_130(
    serve_process: ServeProcess, terminal: Terminal, members: list[Member]
) -> None:
    (endpoint,) = serve_process("serve", "chat", "127.0.0.1:0").endpoints
    bob = Member(endpoint, "bob")
    members.append(bob)
    terminal.start(client(endpoint, "carol"))
    terminal.wait_text("you joined #lobby")
    terminal.type("leaving soon", enter=False)
    terminal.wait_for(lambda _: terminal.input_line() == "#lobby carol> leaving soon", "typing")
    terminal.keys("C-c")
    screen = terminal.wait_text("exit status 130")
    assert not any("Traceback" in line for line in screen)
    assert bob.expect("carol") == "#lobby -!- carol joined #lobby"
    assert bob.expect("carol") == "#lobby -!- carol quit"


def test_a_dropped_connection_is_reported_and_retried_until_the_server_returns(
    serve_process: ServeProcess, terminal: Terminal, members: list[Member]
) -> None:
    first = serve_process("serve", "chat", "127.0.0.1:0", "--grace", "0")
    (endpoint,) = first.endpoints
    terminal.start(client(endpoint, "dora"))
    terminal.wait_text("you joined #lobby")
    first.stop()
    terminal.wait_text("-!- error: server is shutting down")
    terminal.wait_text(f"-- connection lost: {endpoint} closed the connection; reconnecting in")
    terminal.type("anyone?")
    terminal.wait_text("-- not connected; not sent")

    second = serve_process("serve", "chat", str(endpoint), "--grace", "0")
    assert second.endpoints == [endpoint]

    def rejoined(screen: list[str]) -> bool:
        back = [n for n, line in enumerate(screen) if line == f"-- connected to {endpoint}"]
        return bool(back) and any("you joined #lobby" in line for line in screen[back[-1] :])

    terminal.wait_for(rejoined, "a reconnection and a new join")
    erin = Member(endpoint, "erin")
    members.append(erin)
    terminal.wait_text("#lobby -!- erin joined #lobby")
    terminal.type("back again")
    assert erin.expect("back again") == "#lobby <dora> back again"
    terminal.wait_for(lambda _: terminal.input_line() == "#lobby dora>", "the input line")
