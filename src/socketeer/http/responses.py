"""Response building blocks: status reasons, security headers, errors, static assets.

Every page socketeer itself writes carries a strict Content-Security-Policy
(scripts and styles from the server only, no inline script, no framing)
and ``X-Content-Type-Options: nosniff``.  Files from a share get a
sandboxing policy of their own (see :data:`SHARED_FILE_HEADERS`): an HTML
file someone uploaded cannot run script as the server's origin.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Exchange

__all__ = [
    "PAGE_HEADERS",
    "SHARED_FILE_HEADERS",
    "Headers",
    "HttpError",
    "asset",
    "error_response",
    "html_response",
    "json_response",
    "reason",
    "wants_json",
]

#: Headers on every page and answer socketeer writes itself.
PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
)
#: Headers on files served from a share: no script, no plugins, a unique origin.
SHARED_FILE_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; "
        "style-src 'unsafe-inline'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
)
#: Assets shipped in the package, by the name they are served under.
ASSETS = {
    "files.js": "text/javascript; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class HttpError(Exception):
    """A request answered with an error ``status``; ``message`` is said to the client."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


class Headers:
    """A request's headers, by lower-case name (the last value of a repeated one)."""

    def __init__(self, fields: Iterable[tuple[bytes, bytes]]) -> None:
        self._fields: dict[str, str] = {}
        for name, value in fields:
            self._fields[name.decode("ascii").lower()] = value.decode("latin-1")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The header's value, or ``default``."""
        return self._fields.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._fields


def reason(status: int) -> bytes:
    """The status code's reason phrase."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def wants_json(headers: Headers) -> bool:
    """Whether the client asked for JSON rather than a page."""
    accept = headers.get("accept") or ""
    return "application/json" in accept and "text/html" not in accept


async def html_response(
    exchange: Exchange, status: int, page: str, headers: Iterable[tuple[str, str]] = ()
) -> None:
    """A page socketeer wrote."""
    await exchange.respond(
        status,
        [("content-type", "text/html; charset=utf-8"), *PAGE_HEADERS, *headers],
        page.encode("utf-8", "replace"),
    )


async def json_response(
    exchange: Exchange, status: int, value: Any, headers: Iterable[tuple[str, str]] = ()
) -> None:
    """A JSON answer."""
    body = json.dumps(value, ensure_ascii=False).encode() + b"\n"
    await exchange.respond(
        status, [("content-type", "application/json"), *PAGE_HEADERS, *headers], body
    )


async def error_response(exchange: Exchange, error: HttpError) -> None:
    """An error, as JSON to scripts and as a short page to browsers and people."""
    headers = list(error.headers)
    if wants_json(exchange.headers):
        await json_response(exchange, error.status, {"error": error.message}, headers)
        return
    accept = exchange.headers.get("accept") or ""
    if "text/html" in accept:
        phrase = html.escape(reason(error.status).decode())
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/.socketeer/style.css"><title>{phrase}</title></head>'
            f"<body><main><h1>{error.status} {phrase}</h1><p>{html.escape(error.message)}</p>"
            '<p><a href="/">Back to the start</a></p></main></body></html>'
        )
        await html_response(exchange, error.status, page, headers)
        return
    await exchange.respond(
        error.status,
        [("content-type", "text/plain; charset=utf-8"), *PAGE_HEADERS, *headers],
        f"{error.message}\n".encode(),
    )


def asset(name: str) -> tuple[bytes, str] | None:
    """A shipped asset's bytes and content type, or None."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return resources.files(__package__).joinpath("static", name).read_bytes(), content_type
