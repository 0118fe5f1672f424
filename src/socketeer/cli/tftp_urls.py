"""``tftp://HOST[:PORT]/FILE`` on the command line: what ``get`` and ``put`` take for a TFTP
server, kept apart from the TFTP client and server so that those load only when used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import click

from ..endpoint import Endpoint
from .params import EndpointType

__all__ = ["EndpointOrTftpUrl", "TftpUrl", "parse_tftp_url"]


@dataclass(frozen=True)
class TftpUrl:
    """``tftp://HOST[:PORT]/PATH`` as typed."""

    host: str
    port: int
    path: str


def parse_tftp_url(text: str) -> TftpUrl:
    """``text`` as a TFTP URL (port 69 when not given); ValueError if it is not one."""
    parts = urlsplit(text)
    if parts.scheme.lower() != "tftp" or not parts.hostname:
        raise ValueError(f"{text!r} is not tftp://HOST[:PORT]/FILE")
    port = parts.port or 69
    path = unquote(parts.path).lstrip("/")
    if not path:
        raise ValueError(f"{text!r} names no file: tftp://HOST[:PORT]/FILE")
    return TftpUrl(parts.hostname, port, path)


class EndpointOrTftpUrl(EndpointType):
    """An endpoint, or a ``tftp://`` URL (see :func:`parse_tftp_url`)."""

    def convert(  # type: ignore[override]
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Endpoint | TftpUrl:
        if isinstance(value, TftpUrl) or not str(value).lower().startswith("tftp://"):
            return super().convert(value, param, ctx)
        try:
            return parse_tftp_url(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
