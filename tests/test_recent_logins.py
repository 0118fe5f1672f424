"""Logins verified lately, without a server: kept briefly, bounded, forgotten on a new file."""

from __future__ import annotations

import pytest

from socketeer.accounts import Account, Accounts, parse_users
from socketeer.passwords import hash_password
from socketeer.recent_logins import RecentLogins

HASH = hash_password("pw", log_n=10)
USERS = f"""
[users.alice]
password = "{HASH}"

[users.bob]
password = "{HASH}"
"""


def alice_in(text: str) -> tuple[Accounts, Account]:
    accounts = parse_users(text)
    alice = accounts.find("alice")
    assert alice is not None
    return accounts, alice


def test_a_login_is_taken_again_only_for_its_lifetime() -> None:
    accounts, alice = alice_in(USERS)
    logins = RecentLogins(lifetime=60.0)
    assert logins.find(accounts, "alice", "pw", 0.0) is None
    logins.remember(accounts, "alice", "pw", alice, 0.0)
    assert logins.find(accounts, "alice", "pw", 59.0) is alice
    assert logins.find(accounts, "alice", "other", 59.0) is None  # another password
    assert logins.find(accounts, "bob", "pw", 59.0) is None  # another name, same password
    assert logins.find(accounts, "alice", "pw", 60.0) is None  # expired
    assert len(logins) == 0


def test_name_and_password_cannot_be_shifted_into_each_other() -> None:
    accounts, alice = alice_in(USERS)
    logins = RecentLogins()
    logins.remember(accounts, "alice", "pw", alice, 0.0)
    assert logins.find(accounts, "alicep", "w", 1.0) is None
    assert logins.find(accounts, "alic", "epw", 1.0) is None


def test_a_users_file_read_again_or_a_changed_account_forgets() -> None:
    accounts, alice = alice_in(USERS)
    logins = RecentLogins()
    logins.remember(accounts, "alice", "pw", alice, 0.0)
    again = parse_users(USERS)  # the same text, read again: other objects
    assert logins.find(again, "alice", "pw", 1.0) is None
    assert len(logins) == 0
    logins.remember(accounts, "alice", "pw", alice, 0.0)
    logins.forget()
    assert logins.find(accounts, "alice", "pw", 1.0) is None


def test_at_most_capacity_logins_are_kept_the_least_recent_go() -> None:
    accounts, alice = alice_in(USERS)
    logins = RecentLogins(capacity=3)
    for index in range(5):
        logins.remember(accounts, "alice", f"pw{index}", alice, 0.0)
    assert len(logins) == 3
    assert logins.find(accounts, "alice", "pw0", 1.0) is None
    assert logins.find(accounts, "alice", "pw4", 1.0) is alice


def test_the_password_is_not_kept() -> None:
    accounts, alice = alice_in(USERS)
    logins = RecentLogins()
    secret = "a rather long secret password"
    logins.remember(accounts, "alice", secret, alice, 0.0)
    kept = repr(vars(logins)).encode()
    assert secret.encode() not in kept
    assert secret.encode().hex() not in kept.decode()


def test_a_cache_needs_room_and_time() -> None:
    with pytest.raises(ValueError, match="room for one login"):
        RecentLogins(capacity=0)
    with pytest.raises(ValueError, match="positive lifetime"):
        RecentLogins(lifetime=0)


def test_every_spelling_of_a_name_is_one_login() -> None:
    accounts, alice = alice_in(USERS)
    logins = RecentLogins()
    logins.remember(accounts, "alice", "pw", alice, 0.0)
    for spelling in ("ALICE", "Alice", "al\u200bice"):
        assert accounts.find(spelling) is alice
        assert logins.find(accounts, spelling, "pw", 1.0) is alice
    assert len(logins) == 1
