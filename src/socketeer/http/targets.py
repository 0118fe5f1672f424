"""Request targets: the remote path and query a request names, every encoding trick refused.

Sans-IO.  A target is percent-decoded once, as UTF-8 (strict: an overlong
sequence such as ``%c0%ae`` is not a dot, it is an error), and then
refused if any name on its way is empty (``//``), ``.`` or ``..``, or if it
holds a backslash or a NUL.  What remains is a remote path the files store
checks again (symlinks, depth, partial files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_to_bytes

__all__ = ["BadTarget", "Target", "parse_target"]

#: Bytes a request target may have.
MAX_TARGET = 8192


class BadTarget(ValueError):
    """A target that cannot name anything in the share; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where a request points: ``path`` below the share ("" is the share itself).

    ``directory`` is whether the target ended with ``/``; ``query`` holds the
    query's fields (``?zip`` is ``{"zip": ""}``).
    """

    path: str
    directory: bool
    query: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The names along the path."""
        return tuple(self.path.split("/")) if self.path else ()


def parse_target(raw: bytes) -> Target:
    """The :class:`Target` in a request's raw target, or :class:`BadTarget`."""
    if len(raw) > MAX_TARGET:
        raise BadTarget(f"request target longer than {MAX_TARGET} bytes")
    if not raw.startswith(b"/"):
        raise BadTarget("the request target must be a path starting with /")
    raw_path, _, raw_query = raw.partition(b"?")
    raw_path = raw_path.partition(b"#")[0]
    decoded = unquote_to_bytes(raw_path)
    if b"\x00" in decoded:
        raise BadTarget("path contains a NUL byte")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadTarget("path is not valid UTF-8") from None
    if "\\" in text:
        raise BadTarget("path contains a backslash")
    directory = text.endswith("/")
    names = text[1:-1].split("/") if directory else text[1:].split("/")
    if names == [""]:
        names = []
    for name in names:
        if name == "":
            raise BadTarget("path contains an empty name (//)")
        if name in (".", ".."):
            raise BadTarget(f"path contains {name!r}")
    try:
        query = dict(parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise BadTarget("query is not valid") from None
    return Target("/".join(names), directory or not names, query)
