"""Accounts on the command line: passwd, --users, --user and USER@HOST, as real processes."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from pathlib import Path

import pytest

from socketeer.accounts import parse_users
from support import WAIT, ServeProcess, assert_one_line_error, run_cli, socketeer_command


def run(*args: str, password: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """``socketeer ARGS`` without a controlling terminal, the password in the environment."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("SOCKETEER_PASSWORD", "SOCKETEER_TOKEN")
    }
    if password is not None:
        env["SOCKETEER_PASSWORD"] = password
    return subprocess.run(
        socketeer_command(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT,
        check=False,
        env=env,
        start_new_session=True,  # no terminal to ask on
    )


def entry(name: str, password: str) -> str:
    made = run_cli("passwd", name, "--cost", "10", input=f"{password}\n".encode())
    assert made.returncode == 0, made.stderr
    return made.stdout.decode()


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    alice = entry("alice", "alice pw")
    path.write_text(f'[anonymous]\n"/public" = "read"\n\n{alice}"/alice" = "read write delete"\n')
    return path


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "public").mkdir(parents=True)
    (root / "alice").mkdir()
    (root / "public" / "hello.txt").write_text("hello\n")
    (root / "alice" / "notes.txt").write_text("notes\n")
    return root


def test_passwd_reads_one_line_from_stdin_and_prints_an_entry() -> None:
    text = entry("alice", "s3cret words")
    assert text.startswith("[users.alice]\npassword = ")
    accounts = parse_users(text)
    assert accounts.authenticate("alice", "s3cret words") is not None
    assert accounts.authenticate("alice", "s3cret") is None


def test_passwd_asks_twice_on_a_terminal() -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execvp(socketeer_command()[0], [*socketeer_command("passwd", "bob", "--cost", "10")])
    seen = b""
    try:
        for answer in (b"pw one\n", b"pw one\n"):
            seen += _read_until(fd, b": ")
            os.write(fd, answer)
        seen += _read_until(fd, b'"\r\n')
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"new password for bob: " in seen
    assert b"again: " in seen
    assert b"pw one" not in seen  # not echoed
    text = seen.decode().replace("\r\n", "\n")
    entry_text = text[text.index("[users.bob]") :]
    assert parse_users(entry_text).authenticate("bob", "pw one") is not None


def _read_until(fd: int, end: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + WAIT
    while not data.endswith(end):
        assert time.monotonic() < deadline, f"no {end!r} in {data!r}"
        data += os.read(fd, 1)
    return data


def test_passwd_refuses_an_empty_password_and_a_bad_name() -> None:
    assert_one_line_error(run_cli("passwd", "alice", input=b"\n"), 2, "cannot be empty")
    assert_one_line_error(run_cli("passwd", "a b", input=b"x\n"), 2, "account name")


def test_a_bad_users_file_is_one_line_naming_the_line(tmp_path: Path, share: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(entry("alice", "pw") + '"/alice" = "read everything"\n')
    result = run_cli("serve", "files", str(share), "127.0.0.1:0", "--users", str(bad))
    assert_one_line_error(result, 2, f"{bad}:3: unknown right 'everything'")
    missing = run_cli("serve", "chat", "127.0.0.1:0", "--users", str(tmp_path / "nope.toml"))
    assert_one_line_error(missing, 2, "nope.toml")


def test_clients_log_in_with_user_and_the_password_from_the_environment(
    serve_process: ServeProcess, users: Path, share: Path
) -> None:
    server = serve_process("serve", "files", str(share), "127.0.0.1:0", "--users", str(users))
    (endpoint,) = server.endpoints
    listed = run("ls", str(endpoint), "alice", "--user", "alice", password="alice pw")
    assert listed.returncode == 0, listed.stderr
    assert "notes.txt" in listed.stdout.decode()
    at = run("ls", f"alice@{endpoint}", "alice", password="alice pw")
    assert at.returncode == 0, at.stderr
    anonymous = run("ls", str(endpoint), "alice")
    assert_one_line_error(anonymous, 1, "anonymous users may not read")
    wrong = run("ls", str(endpoint), "--user", "alice", password="nope")
    assert_one_line_error(wrong, 1, "wrong user name or password")


def test_without_a_password_or_a_terminal_the_client_stops(
    serve_process: ServeProcess, users: Path, share: Path
) -> None:
    server = serve_process("serve", "files", str(share), "127.0.0.1:0", "--users", str(users))
    (endpoint,) = server.endpoints
    result = run("get", f"alice@{endpoint}", "alice/notes.txt", "-")
    assert_one_line_error(result, 2, "SOCKETEER_PASSWORD")


def test_registered_only_needs_users(tmp_path: Path) -> None:
    result = run_cli("serve", "chat", "127.0.0.1:0", "--registered-only")
    assert_one_line_error(result, 2, "--registered-only needs --users")
