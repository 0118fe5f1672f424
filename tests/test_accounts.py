"""The users file, its rights and its password hashes, without a server."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketeer.accounts import (
    MAX_USERS_FILE,
    Right,
    UsersFileError,
    parse_rights,
    parse_users,
    rights_text,
)
from socketeer.passwords import hash_password, parse_hash
from socketeer.services.chat.names import name_key

HASH = hash_password("pw", log_n=10)

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,23}", fullmatch=True)
path_names = st.lists(st.sampled_from(["a", "b", "alice", "alice2", "x y", "é"]), max_size=4)
rights = st.sets(st.sampled_from(["read", "write", "delete"]))


def toml_path(parts: list[str]) -> str:
    return "/" + "/".join(parts)


@given(st.text(max_size=400))
@settings(max_examples=150, deadline=None)
def test_any_text_is_accounts_or_one_line_naming_the_file(text: str) -> None:
    try:
        parse_users(text, "u.toml")
    except UsersFileError as exc:
        message = str(exc)
        assert message.startswith("u.toml")
        assert "\n" not in message


@given(
    st.dictionaries(
        names,
        st.dictionaries(path_names.map(tuple), rights, max_size=4),
        max_size=4,
    ),
    path_names,
)
@settings(max_examples=100, deadline=None)
def test_rights_are_the_longest_matching_rule(
    accounts: dict[str, dict[tuple[str, ...], set[str]]], target: list[str]
) -> None:
    keys = {name_key(name) for name in accounts}
    lines = []
    for name, rules in accounts.items():
        lines += [f'[users."{name}"]', f'password = "{HASH}"']
        lines += [f'"{toml_path(list(p))}" = "{" ".join(sorted(r))}"' for p, r in rules.items()]
    text = "\n".join(lines)
    if len(keys) < len(accounts):  # two names alike: refused
        with pytest.raises(UsersFileError, match="looks like"):
            parse_users(text)
        return
    parsed = parse_users(text)
    for name, rules in accounts.items():
        account = parsed.find(name)
        assert account is not None
        matching = [p for p in rules if tuple(target[: len(p)]) == p]
        want = Right.NONE
        if matching:
            want = parse_rights(" ".join(rules[max(matching, key=len)]))
        assert parsed.rights(account, tuple(target)) == want


def test_a_prefix_is_whole_names() -> None:
    accounts = parse_users(f'[users.alice]\npassword = "{HASH}"\n"/alice" = "read write"\n')
    alice = accounts.find("alice")
    assert accounts.rights(alice, ("alice", "x")) == Right.READ | Right.WRITE
    assert accounts.rights(alice, ("alice2",)) == Right.NONE
    assert accounts.rights(None, ("alice",)) == Right.NONE


def test_anonymous_rights_add_to_an_account_s() -> None:
    text = (
        f'[anonymous]\n"/public" = "read"\n[users.bob]\npassword = "{HASH}"\n"/inbox" = "write"\n'
    )
    accounts = parse_users(text)
    bob = accounts.find("bob")
    assert accounts.rights(bob, ("public", "f")) == Right.READ
    assert accounts.rights(bob, ("inbox",)) == Right.WRITE
    assert accounts.ways(None, ()) == frozenset({"public"})


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[users.alice]\npassword = 3\n", 1, "no password"),
        ('[users.alice]\npassword = "nope"\n', 2, "not an scrypt hash"),
        (f'[users.alice]\npassword = "{HASH}"\n"/a" = "rw"\n', 3, "unknown right 'rw'"),
        (f'[users.alice]\npassword = "{HASH}"\n"a" = "read"\n', 3, "unknown key 'a'"),
        (f'[users.alice]\npassword = "{HASH}"\n"/a/../b" = "read"\n', 3, "holds .."),
        (f'[users."a b"]\npassword = "{HASH}"\n', 1, "an account name is"),
        (f'[users.alice]\npassword = "{HASH}"\n\n[users.a1ice]\npassword = "{HASH}"\n', 4, "looks"),
        (f'[users.alice]\npassword = "{HASH}"\n"/a" = "read"\n"/a/" = "write"\n', 4, "already"),
        ("[users.alice]\npassword = \n", 2, "not TOML"),
        ("[admins]\n", 1, "unknown table"),
        ("[anonymous]\n\"/x\" = 'read'\nfoo = 'read'\n", 3, "unknown key 'foo'"),
    ],
)
def test_a_bad_users_file_names_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(UsersFileError) as caught:
        parse_users(text, "u.toml")
    assert caught.value.line == line, caught.value
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"u.toml:{line}: ")


def test_a_huge_users_file_is_refused_and_a_big_one_loads() -> None:
    with pytest.raises(UsersFileError, match="over 16 MiB"):
        parse_users("#" * (MAX_USERS_FILE + 1))
    text = "".join(
        f'[users.u{i}]\npassword = "{HASH}"\n"/u{i}" = "read write"\n' for i in range(10_000)
    )
    start = time.monotonic()
    accounts = parse_users(text)
    assert len(accounts) == 10_000
    assert time.monotonic() - start < 10


def test_passwords_match_only_themselves() -> None:
    hashed = parse_hash(hash_password("right", log_n=10))
    assert hashed.matches("right")
    assert not hashed.matches("Right")
    assert not hashed.matches("")
    assert str(hashed) == str(parse_hash(str(hashed)))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "$scrypt$ln=14,r=8,p=1$!!!$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # 128 GiB a check
        "$scrypt$ln=14,r=8,p=1$c2E$aGFzaGhhc2hoYXNoaGFzaA",  # a 2-byte salt
    ],
)
def test_malformed_or_costly_hashes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (each has its own message)
        parse_hash(text)


def test_authenticate_is_as_slow_for_unknown_names() -> None:
    accounts = parse_users(f'[users.alice]\npassword = "{hash_password("pw")}"\n')
    accounts.authenticate("nobody", "x")  # the stand-in hash is made once

    def took(name: str) -> float:
        start = time.perf_counter()
        accounts.authenticate(name, "wrong")
        return time.perf_counter() - start

    known = min(took("alice") for _ in range(3))
    unknown = min(took("nobody") for _ in range(3))
    assert 0.5 < unknown / known < 2


def test_rights_text_round_trips() -> None:
    for value in (Right.NONE, Right.READ, Right.READ | Right.DELETE, Right.ALL):
        assert parse_rights(rights_text(value)) == value
