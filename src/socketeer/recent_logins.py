"""Logins verified a moment ago: a password sent with every request costs one scrypt.

Browsers and ``curl -u`` send HTTP Basic credentials with every request;
checking each with scrypt (tens of milliseconds of CPU) would let anyone
with one account, or with none, keep the server's processors busy.  A
:class:`RecentLogins` remembers the logins that succeeded, briefly:

- kept is a keyed hash of the name and the password (HMAC-SHA-256 under a
  key drawn at random when the process starts, never written anywhere),
  never the password itself; the name as accounts are found by it, so
  ``ALICE`` and ``alice`` with one password are one login;
- an entry lasts :data:`LIFETIME` seconds, and at most :data:`CAPACITY`
  are kept (the least recently used go first);
- an entry stands only for the account object it proved, of the users
  file it was proved in: a users file read again, or an account that is
  no longer the same, is checked with scrypt again;
- a wrong password is never kept, so failures cost a full check each
  (for names that are an account's and names that are not alike).

Sans-IO: time comes in as ``now``.  Not thread-safe: use it from one thread
(the event loop).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

from .accounts import Account, Accounts
from .services.chat.names import name_key

__all__ = ["CAPACITY", "LIFETIME", "RecentLogins"]

#: Seconds a verified login is taken without another check.
LIFETIME = 60.0
#: Verified logins kept at most.
CAPACITY = 1024


class RecentLogins:
    """The logins verified in the last ``lifetime`` seconds (at most ``capacity``)."""

    def __init__(
        self, capacity: int = CAPACITY, lifetime: float = LIFETIME, key: bytes | None = None
    ) -> None:
        if capacity < 1 or lifetime <= 0:
            raise ValueError("a login cache needs room for one login and a positive lifetime")
        self.capacity = capacity
        self.lifetime = lifetime
        self._key = key if key is not None else secrets.token_bytes(32)
        self._known: OrderedDict[bytes, tuple[Account, float]] = OrderedDict()
        self._accounts: Accounts | None = None  # the users file the entries were proved in

    def __len__(self) -> int:
        return len(self._known)

    def find(self, accounts: Accounts, name: str, password: str, now: float) -> Account | None:
        """The account ``name`` and ``password`` proved lately in ``accounts``; None: check it."""
        self._same_file(accounts)
        key = self._digest(name, password)
        found = self._known.get(key)
        if found is None:
            return None
        account, until = found
        if now >= until or accounts.find(name) is not account:
            del self._known[key]
            return None
        self._known.move_to_end(key)
        return account

    def remember(
        self, accounts: Accounts, name: str, password: str, account: Account, now: float
    ) -> None:
        """``password`` was just checked: it is ``account``'s, found as ``name`` in ``accounts``."""
        self._same_file(accounts)
        key = self._digest(name, password)
        self._known[key] = (account, now + self.lifetime)
        self._known.move_to_end(key)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def forget(self) -> None:
        """Drop every login (the users file was read again)."""
        self._known.clear()
        self._accounts = None

    def _same_file(self, accounts: Accounts) -> None:
        if accounts is not self._accounts:
            self.forget()
            self._accounts = accounts

    def _digest(self, name: str, password: str) -> bytes:
        # By the name's key: the spellings that log in to one account (ALICE, alice) are one
        # login, so no spelling of it costs another check.
        raw_name = name_key(name).encode("utf-8", "surrogatepass")
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        mac.update(len(raw_name).to_bytes(8, "big"))
        mac.update(raw_name)
        mac.update(password.encode("utf-8", "surrogatepass"))
        return mac.digest()
