"""The README followed line by line: every command in its shell blocks, run in order.

Each ``$ COMMAND`` of a ``console`` block runs in bash with the installed
``socketeer`` (this interpreter's) first on PATH, in a working directory and
a HOME of its own, and what it prints is compared with the lines the README
shows under it.  The README's ports are replaced by free ones (so the walk
runs beside anything else on the machine), its ``/tmp/echo.sock`` by a path
in the test's directory, and the comparison allows for ports, times, dates
and a directory's size (the filesystem's), since those differ from run to
run.  ``socketeer serve`` commands keep running (the README starts them in
a terminal of their own, or with ``&``) until a later one takes their port.
Files the README assumes are there (``~/shared`` with ``notes.txt`` and
``photos/``, ``report.pdf`` and ``src/`` in the current directory) are made
first.  A ``tls://`` server's fingerprint, which the README calls ``FP``, is
the one it prints.  The install itself is tests/test_readme_fresh.py's business.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import WAIT, read_line

README = Path(__file__).resolve().parent.parent / "README.md"
NOTES = bytes(range(256)) * 4096  # the README's ls shows notes.txt with 1,048,576 bytes
PHOTO = "cat.jpg"
#: What the README's TFTP example serves (a boot file of a few blocks).
BOOT = bytes(range(256)) * 9

#: Commands a person types into: the lines of the README's transcript that are typed.
TYPED = {"nc 127.0.0.1 1234": ["alice", "exit"]}
#: Commands the README shows without a transcript because a person would be typing
#: into them: what the walk types instead, and a line of what they must print.
INTERACTIVE = {
    "socketeer chat 127.0.0.1:6667 --nick alice": (b"hello\n", "#lobby <alice> hello"),
    "nc 127.0.0.1 6667": (b"alice\n/quit\n", "you are now known as alice"),
}
#: Blocks that show output without commands: what the README shows there, and why the
#: walk cannot run it (other tests do).
NOT_COMMANDS = {
    "lost with 13,631,488 bytes": "an interrupted transfer: the README shows what Ctrl-C "
    "or a dropped network prints; tests/test_files_cli_interrupted.py interrupts transfers",
}


@dataclass
class Step:
    """One command of the README and the lines it shows under it."""

    command: str
    shown: list[str] = field(default_factory=list)


def steps() -> Iterator[Step]:
    """The README's commands in order: ``sh`` blocks' servers, ``console`` blocks' commands."""
    for language, block in re.findall(
        r"^```(sh|console)\n(.*?)^```", README.read_text(), re.M | re.S
    ):
        if language == "sh":
            for line in block.splitlines():
                server = re.search(r"(socketeer serve [^#]*?)\s*(#.*)?$", line)
                if server:
                    yield Step(server.group(1))
            continue
        if not block.lstrip().startswith("$"):
            (reason,) = [why for shown, why in NOT_COMMANDS.items() if shown in block]
            assert reason
            continue
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, *shown = part.rstrip("\n").split("\n")
            yield Step(command, shown)


def normal(lines: list[str]) -> list[str]:
    """Lines without what differs from run to run: ports, times, dates, directory sizes."""
    out = []
    for line in lines:
        line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "DATE", line)
        line = re.sub(r"\b\d\d:\d\d:\d\d\b", "TIME", line)
        line = re.sub(r"(127\.0\.0\.1|\[::1\]):\d+", r"\1:PORT", line)
        line = re.sub(r"^d\s+[\d,]+", "d SIZE", line)
        out.append(" ".join(line.split()))
    return out


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Walk:
    """A reader's machine: a HOME, a current directory, servers running, ports replaced."""

    def __init__(self, root: Path) -> None:
        self.home, self.work = root / "home", root / "work"
        (self.home / "shared" / "photos").mkdir(parents=True)
        (self.home / "shared" / "notes.txt").write_bytes(NOTES)
        (self.home / "shared" / "photos" / PHOTO).write_bytes(b"\xff\xd8 a cat")
        (self.work / "src").mkdir(parents=True)
        (self.work / "src" / "hello.py").write_text("print('hello')\n")
        (self.work / "report.pdf").write_bytes(b"%PDF-1.7\n")
        (self.work / "boot").mkdir()
        (self.work / "boot" / "pxelinux.0").write_bytes(BOOT)
        self.sock = root / "echo.sock"
        self.env = dict(os.environ, HOME=str(self.home))
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        self.ports: dict[str, str] = {}
        self.servers: dict[str, subprocess.Popen[bytes]] = {}  # by port (and pid)
        self.services: dict[str, str] = {}  # by port
        self.fingerprint = "FP"  # the last TLS server's

    def local(self, text: str) -> str:
        """The README's text with this machine's ports and paths."""
        for port in re.findall(r"127\.0\.0\.1[: ](\d+)", text):
            if port != "0" and port not in self.ports:
                kind = (
                    socket.SOCK_DGRAM if f"udp://127.0.0.1:{port}" in text else socket.SOCK_STREAM
                )
                self.ports[port] = str(free_port(kind))
        for readme, mine in self.ports.items():
            text = re.sub(rf"(127\.0\.0\.1[: ]){readme}\b", rf"\g<1>{mine}", text)
        text = text.replace("--tls-fingerprint FP", f"--tls-fingerprint {self.fingerprint}")
        return text.replace("/tmp/echo.sock", str(self.sock))

    def readme(self, text: str) -> str:
        """Output of this machine with the README's paths."""
        return text.replace(str(self.sock), "/tmp/echo.sock")

    def serve(self, step: Step) -> None:
        command = self.local(step.command).removesuffix("&").strip()
        (service,) = re.findall(r"socketeer serve (\w+)", command)
        for port in re.findall(r"127\.0\.0\.1:(\d+)", command):
            if self.services.get(port) == service:  # the README's other way to serve it
                self.stop(self.servers.pop(port))
        log = self.work.parent / f"serve-{len(self.servers)}.log"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec env {command}"],  # one process, as the reader's shell runs
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        for port in re.findall(r"127\.0\.0\.1:(\d+)", command):
            self.servers[port] = proc
            self.services[port] = service
        self.servers.setdefault(str(proc.pid), proc)
        assert proc.stdout is not None
        said = [
            self.readme(read_line(proc.stdout, time.monotonic() + WAIT).decode().rstrip("\n"))
            for _ in range(max(1, len(step.shown)))
        ]
        if not said[0].startswith("listening on "):
            proc.wait(WAIT)
            raise AssertionError(f"{step.command}: {log.read_text() or said}")
        if step.shown:
            assert normal(said) == normal(step.shown), step.command
        while "tls://" in command and not said[-1].startswith("tls fingerprint sha256 "):
            said.append(read_line(proc.stdout, time.monotonic() + WAIT).decode().strip())
            assert said[-1], f"{step.command}: no fingerprint line in {said}"
        if "tls://" in command:
            self.fingerprint = said[-1].split()[-1]

    def run(self, step: Step) -> subprocess.CompletedProcess[bytes]:
        command = re.sub(r"\s+#[^'\"]*$", "", step.command)  # the README's comment
        typed = TYPED.get(command, [])
        stdin, must_show = INTERACTIVE.get(command, (None, None))
        if stdin is None:
            stdin = "".join(f"{line}\n" for line in typed).encode()
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", self.local(command)],
            cwd=self.work,
            env=self.env,
            input=stdin,
            capture_output=True,
            timeout=WAIT,
            check=False,
        )
        assert result.returncode == 0, (step.command, result.stderr.decode())
        out = self.readme(result.stdout.decode(errors="replace")).splitlines()
        if must_show is not None:
            assert not step.shown
            assert any(must_show in line for line in out), (step.command, out)
        elif "| less" in command:  # a pager, not shown: what it pages is the file
            assert result.stdout == NOTES
        else:
            shown = list(step.shown)
            for line in typed:
                shown.remove(line)
            assert normal(out) == normal(shown), step.command
            assert not result.stderr, (step.command, result.stderr.decode())
        return result

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT)
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        for proc in set(self.servers.values()):
            self.stop(proc)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(shutil.which("tftp") is None, reason="the README uses tftp (tftp-hpa)")
@pytest.mark.skipif(shutil.which("nc") is None, reason="the README uses nc (netcat-openbsd)")
@pytest.mark.skipif(not has_ipv6_loopback(), reason="the README serves on [::1]")
def test_the_readme_followed_line_by_line(tmp_path: Path) -> None:
    walk = Walk(tmp_path)
    ran = []
    try:
        for step in steps():
            if step.command.startswith(
                ("socketeer serve", "SOCKETEER_TOKEN=s3cret socketeer serve")
            ):
                walk.serve(step)
            else:
                walk.run(step)
                target = re.search(r"#\s*->\s*(\S+?)(\.\.\.)?(\s|$)", step.command)
                if target:  # the README says where the download goes
                    assert (walk.work / target.group(1)).exists(), step.command
            ran.append(step.command)
    finally:
        walk.close()
    shared = walk.home / "shared"
    assert (walk.work / "notes.txt").read_bytes() == NOTES
    assert (walk.work / "backup" / "photos" / PHOTO).exists(), "get -r photos backup/"
    assert (walk.work / "backup" / PHOTO).exists(), "get -r photos/ backup"
    assert (shared / "photos" / "report.pdf").read_bytes() == b"%PDF-1.7\n"
    assert (shared / "src.tar").stat().st_size > 0
    assert (walk.work / "pxelinux.0").read_bytes() == BOOT, "tftp get pxelinux.0"
    assert ran


def test_every_console_command_is_walked() -> None:
    """A new kind of command in the README is either run by the walk or said not to be."""
    for step in steps():
        first = re.sub(r"^(\w+=\S+ )+", "", step.command).split()[0]
        assert first in {"socketeer", "nc", "echo", "tar", "tftp"}, step.command
