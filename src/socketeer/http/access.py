"""Who may write over HTTP: the token as a bearer, a login cookie, and same-origin posts.

Sans-IO: time comes in as ``now``.  Reading a share is open to everyone;
writing needs the server's token, sent as ``Authorization: Bearer TOKEN``
(curl, scripts) or exchanged once on the login form for a session cookie
(``HttpOnly; SameSite=Strict``; ``Secure`` on https).  A write carried by
the cookie must also come from the page's own origin (its ``Origin``
header): with ``SameSite=Strict`` that makes cross-site form posts
harmless twice over.  Accounts (user and password) plug in as ``basic``: a
function checking a Basic ``Authorization`` header's pair.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "COOKIE",
    "SESSION_LIFETIME",
    "Access",
    "Grant",
    "Verdict",
    "basic_credentials",
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


class Access:
    """The write token's checker, the accounts hook, and the logins handed out.

    ``token`` says whether a token is the write token (None: there is none);
    ``basic`` whether a user and password are an account's.
    """

    def __init__(
        self,
        token: Callable[[str], bool] | None,
        *,
        basic: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._token = token
        self._basic = basic
        self._sessions: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """Whether anyone can log in at all."""
        return self._token is not None or self._basic is not None

    def token_matches(self, token: str) -> bool:
        """Whether ``token`` is the write token (``token``, the checker given, compares)."""
        return self._token is not None and self._token(token)

    def login(self, token: str, now: float) -> str | None:
        """A new session cookie's value for the right ``token``; None for a wrong one."""
        if not self.token_matches(token):
            return None
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=self._sessions.__getitem__)
            del self._sessions[oldest]
        session = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self._sessions[session] = now + SESSION_LIFETIME
        return session

    def logout(self, cookies: Mapping[str, str]) -> None:
        """Forget the login the request's cookie names."""
        self._sessions.pop(cookies.get(COOKIE, ""), None)

    def check(self, authorization: str | None, cookies: Mapping[str, str], now: float) -> Verdict:
        """How a request with these headers may write."""
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                ok = self.token_matches(credential.strip())
                return Verdict(Grant.BEARER if ok else Grant.NONE, failed=not ok)
            if scheme == "basic" and self._basic is not None:
                pair = _basic_pair(credential)
                ok = pair is not None and self._basic(*pair)
                return Verdict(Grant.BASIC if ok else Grant.NONE, failed=not ok)
        session = cookies.get(COOKIE)
        if session is not None:
            expires = self._sessions.get(session)
            if expires is not None and expires > now:
                return Verdict(Grant.COOKIE)
            self._sessions.pop(session, None)
        return Verdict(Grant.NONE)


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """The user and password of a ``Basic`` ``Authorization`` header (None: not one)."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return _basic_pair(credential) if scheme.lower() == "basic" else None


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


def same_origin(origin: str | None, host: str | None, scheme: str) -> bool:
    """Whether a request's ``Origin`` is the server's own (``scheme://host``)."""
    if origin is None or host is None:
        return False
    return origin.strip().lower() == f"{scheme}://{host.strip().lower()}"
