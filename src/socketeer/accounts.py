"""Accounts and their rights per path, read from a users file (TOML); without I/O.

The file (``--users FILE``) names accounts, each with a password hash
(:mod:`.passwords`, made by ``socketeer passwd``) and, for the files
service, rights per path; ``[anonymous]`` gives rights to everyone::

    [anonymous]
    "/public" = "read"

    [users.alice]
    password = "$scrypt$ln=14,r=8,p=1$..."
    "/alice" = "read write delete"

    [users.bob]
    password = "$scrypt$ln=14,r=8,p=1$..."
    "/inbox" = "write"

A path's rights come from the rule with the longest path that is a prefix
of it (by whole names: ``/alice`` is no prefix of ``/alice2``), among the
account's rules, joined with those of ``[anonymous]``: a logged-in user may
always do what anyone may.  No rule: no rights.  The caller passes the path
as the names it *resolves* to (symlinks followed, ``..`` gone), so a path
cannot borrow another's rights by spelling; names that differ only in case
or Unicode form are matched through a callback that asks the file system
whether they are the same file (see :meth:`Accounts.rights`).

Account names are ASCII letters, digits, ``_``, ``.`` and ``-`` (at most 24,
so every account name is also a chat nickname); two accounts whose names
look alike (``alice``, ``Alice``, ``a1ice``) are refused, and a login finds
its account by the same likeness.
"""

from __future__ import annotations

import enum
import functools
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .passwords import PasswordHash, hash_password, parse_hash
from .services.chat.names import fold, name_key

__all__ = [
    "MAX_USERS_FILE",
    "Account",
    "Accounts",
    "Alias",
    "Right",
    "Rule",
    "UsersFileError",
    "account_name_problem",
    "parse_rights",
    "parse_users",
    "read_users",
    "rights_text",
    "rule_path",
    "users_entry",
]

#: The largest users file read (about 100,000 accounts).
MAX_USERS_FILE = 16 * 1024 * 1024
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,23}")


class Right(enum.Flag):
    """What an account may do at a path."""

    NONE = 0
    #: List directories, describe and download files.
    READ = enum.auto()
    #: Upload new files and make directories.
    WRITE = enum.auto()
    #: Delete files and directories, and replace files by uploads.
    DELETE = enum.auto()
    ALL = READ | WRITE | DELETE


_WORDS = {"read": Right.READ, "write": Right.WRITE, "delete": Right.DELETE, "none": Right.NONE}


def parse_rights(text: str) -> Right:
    """``"read write"`` (or ``"read, write"``) as a :class:`Right`; ``"none"`` or ``""``: none."""
    rights = Right.NONE
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        right = _WORDS.get(word.lower())
        if right is None:
            raise ValueError(f"unknown right {word!r} (use read, write, delete or none)")
        rights |= right
    return rights


def rights_text(rights: Right) -> str:
    """Rights as the users file spells them: ``read write``, or ``none``."""
    words = [word for word, right in _WORDS.items() if right and right in rights]
    return " ".join(words) or "none"


def rule_path(text: str) -> tuple[str, ...]:
    """A rule's path (``/``, ``/alice``, ``/a/b/``) as its names; ValueError if malformed."""
    if not text.startswith("/"):
        raise ValueError(f"path {text!r} does not start with /")
    if "\\" in text or "\x00" in text:
        raise ValueError(f"path {text!r} holds a backslash or a NUL")
    names = tuple(name for name in text.split("/") if name not in ("", "."))
    if ".." in names:
        raise ValueError(f"path {text!r} holds ..")
    return names


def account_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an account, or None if it can."""
    if not _ACCOUNT_NAME.fullmatch(name):
        return (
            "an account name is 1 to 24 ASCII letters, digits, _, . and -, "
            "starting with a letter, a digit or _"
        )
    return None


@dataclass(frozen=True)
class Rule:
    """``rights`` at ``path`` (names from the shared directory) and below."""

    path: tuple[str, ...]
    rights: Right


@dataclass(frozen=True)
class Account:
    """One account of the users file: its name, password hash and rules."""

    name: str
    password: PasswordHash = field(repr=False)
    rules: tuple[Rule, ...] = ()


#: Whether two resolved paths (names from the shared directory) are the same file:
#: True, False, or None when that cannot be told (one of them does not exist).
Alias = Callable[[tuple[str, ...], tuple[str, ...]], "bool | None"]


class UsersFileError(ValueError):
    """A users file that cannot be used; ``str()`` is one line naming the file and line."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source, self.line, self.message = source, line, message


@functools.cache
def _nobody() -> PasswordHash:
    """A hash no password is known to match, checked for unknown names so they cost as much."""
    return parse_hash(hash_password("socketeer: nobody", salt=b"socketeer-nobody"))


class Accounts:
    """The accounts of one users file, found by name, with the rights of each."""

    def __init__(self, accounts: Mapping[str, Account], anonymous: tuple[Rule, ...] = ()) -> None:
        self._by_key = {name_key(account.name): account for account in accounts.values()}
        self.anonymous = anonymous

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_key.values())

    def find(self, name: str) -> Account | None:
        """The account called ``name``, or one whose name looks like it (``Alice``)."""
        return self._by_key.get(name_key(name))

    def is_registered(self, name: str) -> bool:
        """Whether ``name``, or a name that looks like it, is an account's."""
        return name_key(name) in self._by_key

    def authenticate(self, name: str, password: str) -> Account | None:
        """The account if ``password`` is its password, else None.

        Slow on purpose (scrypt), and as slow for a name that is no account's,
        so that timing does not tell which names exist.  Run it in a thread.
        """
        account = self.find(name)
        hashed = account.password if account is not None else _nobody()
        matches = hashed.matches(password)
        return account if matches and account is not None else None

    # rights -----------------------------------------------------------------------

    def rights(
        self, account: Account | None, names: tuple[str, ...], alias: Alias | None = None
    ) -> Right:
        """What ``account`` (None: anyone) may do at the resolved path ``names``.

        A rule's name that differs from the path's only in case or Unicode
        form may still be the same file (a case-insensitive file system):
        ``alias`` says.  Where it cannot tell, only rights that hold either
        way are given, so no spelling widens them.
        """
        rights = _longest(self.anonymous, names, alias)
        if account is not None:
            rights |= _longest(account.rules, names, alias)
        return rights

    def tree_rights(self, account: Account | None, names: tuple[str, ...]) -> Right:
        """The rights ``account`` has at ``names`` and everywhere below it (for ``rm -r``)."""
        rights = self.rights(account, names)
        for rule in self._rules(account):
            if len(rule.path) > len(names) and _folded_prefix(names, rule.path):
                rights &= self.rights(account, rule.path)
        return rights

    def ways(self, account: Account | None, names: tuple[str, ...]) -> frozenset[str]:
        """Folded names in ``names`` that lead to paths below where ``account`` has rights.

        A directory on the way to a right may be listed (showing only these)
        and described, so that clients can find their way down to it.
        """
        found = set()
        for rule in self._rules(account):
            below = len(rule.path) > len(names) and _folded_prefix(names, rule.path)
            if below and self.rights(account, rule.path):
                found.add(fold(rule.path[len(names)]))
        return frozenset(found)

    def may_write(self, account: Account | None) -> bool:
        """Whether ``account`` may write anywhere."""
        return any(Right.WRITE in rule.rights for rule in self._rules(account))

    def upload_refusal(
        self, account: Account | None, names: tuple[str, ...], size: int
    ) -> str | None:
        """Why ``account`` may not upload ``size`` bytes to ``names`` (None: rights decide)."""
        return None

    def _rules(self, account: Account | None) -> tuple[Rule, ...]:
        return self.anonymous + (account.rules if account is not None else ())


def _longest(rules: tuple[Rule, ...], names: tuple[str, ...], alias: Alias | None) -> Right:
    """The rights of the longest rule whose path is a prefix of ``names``."""
    best: Right | None = None
    best_length = -1
    maybe: list[Rule] = []
    for rule in rules:
        match = _prefix(rule.path, names, alias)
        if match is None:
            continue
        if not match:
            maybe.append(rule)
        elif len(rule.path) > best_length:
            best, best_length = rule.rights, len(rule.path)
        elif len(rule.path) == best_length and best is not None:
            best &= rule.rights  # one file under two spellings: what both allow
    rights = best if best is not None else Right.NONE
    for rule in maybe:
        if len(rule.path) > best_length:
            rights &= rule.rights  # it may be the one that applies
    return rights


def _prefix(path: tuple[str, ...], names: tuple[str, ...], alias: Alias | None) -> bool | None:
    """Whether ``path`` is a prefix of ``names``: True, False if perhaps, None if not."""
    if len(path) > len(names):
        return None
    sure = True
    for index, (want, have) in enumerate(zip(path, names, strict=False)):
        if want == have:
            continue
        if fold(want) != fold(have):
            return None
        same = alias(names[: index + 1], path[: index + 1]) if alias is not None else None
        if same is False:
            return None
        if same is None:
            sure = False
    return sure


def _folded_prefix(names: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return all(fold(a) == fold(b) for a, b in zip(names, path, strict=False))


# the users file --------------------------------------------------------------------


def parse_users(text: str, source: str = "users file") -> Accounts:
    """The accounts in the TOML ``text``; :class:`UsersFileError` names the line at fault."""
    if len(text) > MAX_USERS_FILE:
        raise UsersFileError(source, None, f"over {MAX_USERS_FILE // 2**20} MiB")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(found.group(1)) if found else max(1, len(text.splitlines()))
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        raise UsersFileError(source, line, f"not TOML: {message}") from None
    lines = _Lines(text, source)
    for key in data:
        if key not in ("users", "anonymous"):
            raise lines.error((key,), f"unknown table {key!r} (use [users.NAME] or [anonymous])")
    anonymous = _rules(lines, ("anonymous",), _table(lines, data, "anonymous"), password=False)
    users = _table(lines, data, "users")
    accounts: dict[str, Account] = {}
    keys: dict[str, str] = {}
    for name, entry in users.items():
        where = ("users", name)
        problem = account_name_problem(name)
        if problem:
            raise lines.error(where, f"{name!r}: {problem}")
        key = name_key(name)
        if key in keys:
            raise lines.error(where, f"{name!r} looks like the account {keys[key]!r}")
        keys[key] = name
        if not isinstance(entry, dict):
            raise lines.error(where, f"users.{name} is not a table")
        hashed = entry.get("password")
        if not isinstance(hashed, str):
            problem = f"{name!r} has no password (socketeer passwd {name} makes one)"
            raise lines.error(where, problem)
        try:
            password = parse_hash(hashed)
        except ValueError as exc:
            raise lines.error((*where, "password"), f"{name!r}: {exc}") from None
        accounts[name] = Account(name, password, _rules(lines, where, entry, password=True))
    return Accounts(accounts, anonymous)


def read_users(path: Path) -> Accounts:
    """The accounts in the users file at ``path`` (at most :data:`MAX_USERS_FILE` bytes)."""
    source = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_USERS_FILE + 1)
    except OSError as exc:
        raise UsersFileError(source, None, exc.strerror or str(exc)) from None
    if len(data) > MAX_USERS_FILE:
        raise UsersFileError(source, None, f"over {MAX_USERS_FILE // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsersFileError(source, line, "not UTF-8 text") from None
    return parse_users(text, source)


def users_entry(name: str, hashed: str) -> str:
    """The users file's entry for a new account (no rights yet: add them below it)."""
    return f'[users.{name}]\npassword = "{hashed}"\n'


def _table(lines: _Lines, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise lines.error((key,), f"{key} is not a table")
    return value


def _rules(
    lines: _Lines, where: tuple[str, ...], entry: dict[str, Any], *, password: bool
) -> tuple[Rule, ...]:
    rules: dict[tuple[str, ...], Rule] = {}
    for key, value in entry.items():
        if password and key == "password":
            continue
        if not key.startswith("/"):
            known = 'password or a path like "/alice"' if password else 'a path like "/public"'
            raise lines.error((*where, key), f"unknown key {key!r} (use {known})")
        if not isinstance(value, str):
            raise lines.error((*where, key), f'{key}: rights are a string like "read write"')
        try:
            path, rights = rule_path(key), parse_rights(value)
        except ValueError as exc:
            raise lines.error((*where, key), str(exc)) from None
        if path in rules:
            raise lines.error((*where, key), f"{key}: this path has rights already")
        rules[path] = Rule(path, rights)
    return tuple(rules.values())


class _Lines:
    """Finds the line a table or key of a users file is on, for error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def error(self, where: tuple[str, ...], message: str) -> UsersFileError:
        return UsersFileError(self.source, self._find(where), message)

    def _find(self, where: tuple[str, ...]) -> int | None:
        own = self._header(where)
        if own is not None:
            return own
        table = self._header(where[:-1])
        if table is not None:
            key = re.escape(where[-1])
            spelled = re.compile(rf"\s*(\"{key}\"|'{key}'|{key})\s*=")
            for number in range(table + 1, len(self.lines) + 1):
                line = self.lines[number - 1]
                if line.lstrip().startswith("["):
                    break
                if spelled.match(line):
                    return number
            return table
        for number, line in enumerate(self.lines, 1):  # an inline table, a dotted key
            if where[-1] in line:
                return number
        return None

    def _header(self, where: tuple[str, ...]) -> int | None:
        if not where:
            return None
        parts = r"\s*\.\s*".join(
            rf"(\"{re.escape(part)}\"|'{re.escape(part)}'|{re.escape(part)})" for part in where
        )
        header = re.compile(rf"\s*\[\s*{parts}\s*\]")
        for number, line in enumerate(self.lines, 1):
            if header.match(line):
                return number
        return None
