"""Offline messages over loopback: a /msg to a registered member who is offline waits for
their next login, in memory and, with SQLite, across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from socketeer import Endpoint
from socketeer.services.chat import ChatService, ChatSettings
from socketeer.services.chat.sqlite_state import SQLiteState
from socketeer.services.chat.state import MAX_OFFLINE_MESSAGES, ChatState
from support import ServeInThread, ThreadedServer
from test_chat_accounts import registry
from test_chat_server import Member, close_members  # noqa: F401  (the fixture closes members)

pytestmark = pytest.mark.usefixtures("no_errors_logged")


def serve(
    serve_in_thread: ServeInThread, state: ChatState | None = None
) -> tuple[ThreadedServer, Endpoint]:
    service = ChatService(ChatSettings(rate=0), registry=registry(), state=state)
    threaded, (endpoint,) = serve_in_thread(service)
    return threaded, endpoint


def log_in(endpoint: Endpoint) -> Member:
    alice = Member(endpoint)
    alice.expect("welcome")
    alice.say("/login alice alice-pw")
    alice.expect("you are now known as alice")
    return alice


def test_a_message_to_an_offline_registered_member_waits_for_their_login(
    serve_in_thread: ServeInThread,
) -> None:
    _, endpoint = serve(serve_in_thread)
    bob = Member(endpoint, "bob")
    bob.say("/msg alice are you there?")
    assert bob.expect("kept")[-2:] == [
        "@alice <bob> are you there?",
        "- -!- alice is offline; the message is kept for when they log in",
    ]
    bob.say("/msg Alice second")  # any name that looks like hers
    bob.expect("kept")
    bob.say("/msg zed hello")  # no such account: refused as before
    assert bob.expect("error")[-1] == '- -!- error: no one is called "zed"'
    alice = log_in(endpoint)
    lines = alice.expect("second")
    assert lines[-3:] == [
        "- -!- 2 messages came while you were away:",
        "@alice <bob> are you there?",
        "@alice <bob> second",
    ]
    alice.close()
    again = log_in(endpoint)  # delivered once
    again.say("/ping done")
    assert not any("away" in line for line in again.expect("pong done"))


def test_only_the_latest_messages_are_kept(serve_in_thread: ServeInThread) -> None:
    _, endpoint = serve(serve_in_thread)
    bob = Member(endpoint, "bob")
    for number in range(MAX_OFFLINE_MESSAGES + 5):
        bob.say(f"/msg alice number {number}")
    bob.say("/ping sent")
    bob.expect("pong sent")
    alice = log_in(endpoint)
    lines = alice.expect(f"number {MAX_OFFLINE_MESSAGES + 4}")
    assert f"- -!- {MAX_OFFLINE_MESSAGES} messages came while you were away:" in lines
    assert "@alice <bob> number 5" in lines
    assert "@alice <bob> number 4" not in lines


def test_kept_messages_survive_a_restart_with_sqlite(
    serve_in_thread: ServeInThread, tmp_path: Path
) -> None:
    threaded, endpoint = serve(serve_in_thread, SQLiteState(tmp_path))
    bob = Member(endpoint, "bob")
    bob.say("/msg alice while you were out")
    bob.expect("kept")
    bob.close()
    threaded.stop()

    _, endpoint = serve(serve_in_thread, SQLiteState(tmp_path))
    alice = log_in(endpoint)
    assert alice.expect("while you were out")[-2:] == [
        "- -!- 1 message came while you were away:",
        "@alice <bob> while you were out",
    ]
