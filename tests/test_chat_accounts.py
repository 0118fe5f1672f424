"""Registered nicknames in the chat, over loopback: /login, PASS, --registered-only."""

from __future__ import annotations

import logging
import shutil
import subprocess

import pytest

from socketeer import Endpoint
from socketeer.accounts import parse_users
from socketeer.passwords import hash_password
from socketeer.services.chat import ChatService, ChatSettings
from socketeer.services.chat.logins import Registry
from socketeer.throttle import AuthThrottle
from support import WAIT, ServeInThread
from test_chat_server import Member, close_members  # noqa: F401  (the fixture closes members)

pytestmark = pytest.mark.usefixtures("no_errors_logged")


def registry(*, registered_only: bool = False) -> Registry:
    hashed = hash_password("alice-pw", log_n=10)
    accounts = parse_users(f'[users.alice]\npassword = "{hashed}"\n')
    return Registry(accounts, registered_only)


def serve(
    serve_in_thread: ServeInThread, *, registered_only: bool = False, max_failures: int = 6
) -> Endpoint:
    service = ChatService(
        ChatSettings(rate=0),
        registry=registry(registered_only=registered_only),
        throttle=AuthThrottle(first_delay=0.01, max_delay=0.02, max_failures=max_failures),
    )
    _, (endpoint,) = serve_in_thread(service)
    return endpoint


def newcomer(endpoint: Endpoint) -> Member:
    member = Member(endpoint)
    member.expect("welcome to socketeer chat")
    return member


def test_a_registered_nickname_needs_its_password(serve_in_thread: ServeInThread) -> None:
    endpoint = serve(serve_in_thread)
    mallory = newcomer(endpoint)
    mallory.say("alice")
    assert "is registered: /login alice PASSWORD" in mallory.expect("registered")[-1]
    mallory.say("/nick Alice")  # another case is the same name
    mallory.expect("is registered")
    mallory.say("/nick \u0430lice")  # a Cyrillic a: it looks the same
    mallory.expect("is registered")
    mallory.say("/login alice wrong")
    assert "alice: wrong password" in mallory.expect("wrong password")[-1]
    mallory.say("mallory")  # unregistered nicknames still work
    mallory.expect("you joined #lobby")


def test_login_takes_the_nickname(serve_in_thread: ServeInThread) -> None:
    endpoint = serve(serve_in_thread)
    alice = newcomer(endpoint)
    alice.say("/login alice alice-pw")
    alice.expect("you are now known as alice")
    alice.expect("you joined #lobby")
    alice.say("hello")
    assert alice.expect("hello") == ["#lobby <alice> hello"]


def test_pass_before_the_nickname_logs_in_and_lines_after_it_wait(
    serve_in_thread: ServeInThread,
) -> None:
    endpoint = serve(serve_in_thread)
    alice = newcomer(endpoint)
    alice.sock.sendall(b"PASS alice-pw\nalice\nfirst words\n")  # in one piece, as nc sends it
    alice.expect("you are now known as alice")
    assert alice.expect("first words")[-1] == "#lobby <alice> first words"


def test_pass_after_the_nickname_is_not_said_to_the_room(serve_in_thread: ServeInThread) -> None:
    endpoint = serve(serve_in_thread)
    bob = newcomer(endpoint)
    bob.say("bob")
    bob.expect("you joined")
    carol = Member(endpoint, "carol")
    bob.expect("carol joined")
    carol.say("PASS secret")
    carol.expect("PASS comes before the nickname")
    bob.nothing_more()


def test_over_nc_with_pass(serve_in_thread: ServeInThread) -> None:
    nc = shutil.which("nc")
    if nc is None:
        pytest.skip("nc is not installed")
    endpoint = serve(serve_in_thread)
    done = subprocess.run(
        [nc, "-N", "127.0.0.1", str(endpoint.port)],
        input=b"PASS alice-pw\nalice\nhello from nc\n/quit\n",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    out = done.stdout.decode()
    assert "you are now known as alice" in out
    assert "<alice> hello from nc" in out


def test_registered_only_refuses_other_nicknames(serve_in_thread: ServeInThread) -> None:
    endpoint = serve(serve_in_thread, registered_only=True)
    bob = newcomer(endpoint)
    bob.say("bob")
    bob.expect("registered nicknames only")
    bob.say("/login alice alice-pw")
    bob.expect("you are now known as alice")


def test_wrong_passwords_are_throttled_then_banned(
    serve_in_thread: ServeInThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    endpoint = serve(serve_in_thread, max_failures=3)
    mallory = newcomer(endpoint)
    for _ in range(3):
        mallory.say("/login alice guess")
        mallory.expect("wrong password")
    mallory.say("/login alice alice-pw")  # right, but the address is banned now
    assert "too many failed logins" in mallory.expect("login")[-1]
    failures = [r for r in caplog.records if "failed login as" in r.message]
    assert len(failures) == 3
    assert all(r.levelno == logging.WARNING for r in failures)


def test_a_control_character_in_a_login_name_is_escaped_in_the_log(
    serve_in_thread: ServeInThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socketeer.server")
    endpoint = serve(serve_in_thread)
    mallory = newcomer(endpoint)
    mallory.sock.sendall("/login \u202ealice guess\n".encode())  # a right-to-left override
    mallory.expect("wrong password")
    logged = [r.message for r in caplog.records if "failed login" in r.message]
    assert logged
    assert "\\u202ealice" in logged[0]
    assert "\u202e" not in logged[0]


def test_without_accounts_login_and_pass_say_so(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(ChatService(ChatSettings()))
    member = newcomer(endpoint)
    member.say("PASS x")
    member.expect("no accounts")
    member.say("/login alice x")
    member.expect("no accounts")
    member.say("alice")
    member.expect("you joined")
