"""Registered nicknames: who must log in, and the password checks members ask for.

With a users file (``serve chat --users FILE``), a nickname that is an
account's (or looks like one: see :func:`.names.name_key`) is taken only
after its password: ``/login NAME PASSWORD``, or IRC's way, a ``PASS
PASSWORD`` line before the nickname.  Checking a password is slow on purpose
(scrypt), so the protocol does not check it: it hands the I/O layer a
:class:`LoginCheck` and holds the member's further lines until the answer
comes back (:meth:`.protocol.ChatProtocol.checked`).  Sans-IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from ...accounts import Accounts

__all__ = ["LoginCheck", "Registry", "pass_line"]

P = TypeVar("P")


@dataclass(frozen=True)
class Registry:
    """The accounts whose nicknames need a password; ``registered_only``: no others."""

    accounts: Accounts
    registered_only: bool = False


@dataclass(frozen=True)
class LoginCheck(Generic[P]):
    """Check that ``password`` is the account ``name``'s, for the member at ``peer``."""

    peer: P
    name: str
    password: str


def pass_line(line: str) -> str | None:
    """The password of an IRC ``PASS password`` (or ``PASS :password``) line, else None.

    Upper case only, as IRC clients send it, so that "pass the salt" is still said.
    """
    word, _, rest = line.partition(" ")
    if word != "PASS" or not rest.strip():
        return None
    rest = rest.strip()
    return rest[1:] if rest.startswith(":") else rest
