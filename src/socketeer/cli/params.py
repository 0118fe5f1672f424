"""What every command shares: parameter types, common options, logging setup."""

from __future__ import annotations

from typing import Any, ClassVar

import click

from ..endpoint import Endpoint, Transport, parse_endpoint
from ..errors import EndpointError
from ..logs import announce, log_to_stderr

__all__ = [
    "ENCODING",
    "ENDPOINT",
    "SECONDS",
    "USER_META",
    "EndpointType",
    "SizeType",
    "announce",
    "encoding_problem",
    "setup_logging",
]


class EndpointType(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """An endpoint as users type it (see :mod:`socketeer.endpoint`)."""

    name = "endpoint"

    def __init__(self, default_transport: Transport = "tcp", *, users: bool = False) -> None:
        self.default_transport: Transport = default_transport
        #: Whether ``USER@`` may open the host (kept in ``ctx.meta[USER_META]``).
        self.users = users

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Endpoint:
        if isinstance(value, Endpoint):
            return value
        text = str(value)
        if self.users:
            text = _take_user(text, ctx)
        try:
            return parse_endpoint(text, self.default_transport)
        except EndpointError as exc:
            self.fail(str(exc), param, ctx)


#: Where an endpoint's ``USER@`` is kept for the command (``ctx.meta``).
USER_META = "socketeer.user"


def _take_user(text: str, ctx: click.Context | None) -> str:
    """``alice@host:port`` (or ``tls://alice@host:port``): the user goes to ``ctx.meta``."""
    scheme, sep, rest = text.rpartition("://")
    if scheme.lower() == "unix" or "@" not in rest:
        return text
    user, _, host = rest.partition("@")
    if ctx is not None and user:
        ctx.meta[USER_META] = user
    return f"{scheme}{sep}{host}"


class SizeType(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A byte count: ``65536``, ``64K``, ``16M``, ``1G``."""

    name = "size"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in self._UNITS else ""
        number = text[: len(text) - len(unit)]
        if not number.isdigit() or int(number) == 0:
            self.fail(f'"{value}" is not a size (examples: 65536, 64K, 16M)', param, ctx)
        size = int(number) * self._UNITS[unit]
        if size >= 2**32:  # a length prefix has four bytes
            self.fail(f'"{value}" is too large (at most 4G - 1)', param, ctx)
        return size


ENDPOINT = EndpointType()
SECONDS = click.FloatRange(min=0)
ENCODING = click.option(
    "--encoding", default="utf-8", show_default=True, help="Text encoding, e.g. gbk."
)


def encoding_problem(exc: LookupError) -> click.BadParameter:
    """The usage error for an ``--encoding`` that cannot be used."""
    return click.BadParameter(str(exc), param_hint="--encoding")


def setup_logging(quiet: bool, level: str) -> None:
    """Log to stderr with timestamps; ``quiet`` keeps warnings and errors only."""
    log_to_stderr("warning" if quiet else level)
