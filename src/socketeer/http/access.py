"""Who sent an HTTP request: the token as a bearer, an account, a login cookie.

Sans-IO: time comes in as ``now``.  Without accounts, reading a share is
open to everyone and writing needs the server's token, sent as
``Authorization: Bearer TOKEN`` (curl, scripts) or exchanged once on the
login form for a session cookie (``HttpOnly; SameSite=Strict``; ``Secure``
on https).  A write carried by the cookie must also come from the page's
own origin (its ``Origin`` header): with ``SameSite=Strict`` that makes
cross-site form posts harmless twice over.  With accounts, a request may
also carry ``Authorization: Basic`` (the pair is handed back unchecked: a
password check is slow and belongs in a thread), and the login form hands
out cookies that stand for an account.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from .origins import same_origin

__all__ = [
    "COOKIE",
    "SESSION_LIFETIME",
    "Access",
    "Grant",
    "Verdict",
    "parse_cookies",
    "same_origin",
]

#: The login cookie's name.
COOKIE = "socketeer_session"
#: Seconds a login lasts.
SESSION_LIFETIME = 7 * 86400.0
#: Logins kept at once (the oldest go first).
MAX_SESSIONS = 10_000


class Grant(Enum):
    """How a request proved it may write, if it did."""

    NONE = "none"
    BEARER = "bearer"
    BASIC = "basic"
    COOKIE = "cookie"


@dataclass(frozen=True)
class Verdict:
    """What :meth:`Access.check` found: the grant, and a credential that was wrong."""

    grant: Grant
    #: A token or password was sent and is wrong (counted against the address).
    failed: bool = False
    #: The account a login cookie stands for (None: the token's cookie).
    user: str | None = None
    #: A Basic header's user and password, still to be checked against the accounts.
    basic: tuple[str, str] | None = field(default=None, repr=False)


class Access:
    """The write token's checker and the logins handed out.

    ``token`` says whether a token is the write token (None: there is none);
    ``accounts``, whether the server has accounts (Basic headers are then
    read, and logins may stand for an account).
    """

    def __init__(self, token: Callable[[str], bool] | None, *, accounts: bool = False) -> None:
        self._token = token
        self.accounts = accounts
        #: Each login cookie's expiry, and the account it stands for (None: the token).
        self._sessions: dict[str, tuple[float, str | None]] = {}

    @property
    def enabled(self) -> bool:
        """Whether anyone can log in at all."""
        return self._token is not None or self.accounts

    def token_matches(self, token: str) -> bool:
        """Whether ``token`` is the write token (``token``, the checker given, compares)."""
        return self._token is not None and self._token(token)

    def login(self, token: str, now: float) -> str | None:
        """A new session cookie's value for the right ``token``; None for a wrong one."""
        if not self.token_matches(token):
            return None
        return self.open_session(None, now)

    def open_session(self, user: str | None, now: float) -> str:
        """A new session cookie's value standing for the account ``user`` (None: the token).

        The caller has checked the password (or the token) already.
        """
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda key: self._sessions[key][0])
            del self._sessions[oldest]
        session = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self._sessions[session] = (now + SESSION_LIFETIME, user)
        return session

    def logout(self, cookies: Mapping[str, str]) -> None:
        """Forget the login the request's cookie names."""
        self._sessions.pop(cookies.get(COOKIE, ""), None)

    def check(self, authorization: str | None, cookies: Mapping[str, str], now: float) -> Verdict:
        """Who a request with these headers is (a Basic pair comes back unchecked)."""
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                ok = self.token_matches(credential.strip())
                return Verdict(Grant.BEARER if ok else Grant.NONE, failed=not ok)
            if scheme == "basic" and self.accounts:
                pair = _basic_pair(credential)
                if pair is None:
                    return Verdict(Grant.NONE, failed=True)
                return Verdict(Grant.BASIC, basic=pair)
        session = cookies.get(COOKIE)
        if session is not None:
            found = self._sessions.get(session)
            if found is not None and found[0] > now:
                return Verdict(Grant.COOKIE, user=found[1])
            self._sessions.pop(session, None)
        return Verdict(Grant.NONE)


def _basic_pair(credential: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def parse_cookies(header: str | None) -> dict[str, str]:
    """The ``name=value`` pairs of a ``Cookie`` header."""
    cookies: dict[str, str] = {}
    for item in (header or "").split(";"):
        name, equals, value = item.strip().partition("=")
        if equals and name:
            cookies.setdefault(name, value.strip('"'))
    return cookies
