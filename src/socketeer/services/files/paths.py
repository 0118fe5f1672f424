"""Remote paths: what a client may name, checked before anything touches the disk.

A remote path is relative to the shared directory, with ``/`` between
names.  Refused outright: absolute paths, ``..``, backslashes, drive letters,
NUL bytes, over-long names, and the names socketeer gives its partial files
(except where a request may name one: deleting it).  Symlinks and depth are
checked where the path is looked up (see ``beneath`` and ``store``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

__all__ = [
    "MAX_DEPTH",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "PARTIAL_SUFFIX",
    "PathRefused",
    "is_partial",
    "join_remote",
    "partial_name",
    "split_remote",
]

#: Bytes (UTF-8) one name in a path may have, as on most file systems.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
#: Names a path may have below the shared directory (``a/b/c`` has 3).
MAX_DEPTH = 128
PARTIAL_SUFFIX = ".socketeer-part"
_DRIVE = re.compile(r"^[A-Za-z]:")


class PathRefused(ValueError):
    """A remote path that may not be used; the message says why."""


def split_remote(path: str, *, partial_last: bool = False) -> tuple[str, ...]:
    """The names along ``path`` ("" or "." is the shared directory itself: ``()``).

    ``partial_last``: the last name may be a partial file's.
    """
    if "\x00" in path:
        raise PathRefused("path contains a NUL byte")
    if "\\" in path:
        raise PathRefused(f"path {path!r} contains a backslash; use / between names")
    if _DRIVE.match(path):
        raise PathRefused(f"path {path!r} names a drive; paths are relative to the share")
    if path.startswith("/"):
        raise PathRefused(f"path {path!r} is absolute; paths are relative to the share")
    try:
        size = len(path.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte (JSON "\ud800")
        raise PathRefused(f"path {path!r} is not valid text") from None
    if size > MAX_PATH_BYTES:
        raise PathRefused(f"path is longer than {MAX_PATH_BYTES} bytes")
    names = tuple(name for name in path.split("/") if name not in ("", "."))
    if size <= MAX_NAME_BYTES and ".." not in names and PARTIAL_SUFFIX not in path:
        return names  # no name can be long, none leads up, none is a partial's
    for index, name in enumerate(names):
        if name == "..":
            raise PathRefused(f"path {path!r} leads outside the shared directory")
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise PathRefused(f"name {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
        if is_partial(name) and not (partial_last and index == len(names) - 1):
            raise PathRefused(f"{name!r} is a partial transfer, not a file")
    return names


_SHA256_HEX = re.compile("[0-9a-f]{64}")


def partial_name(name: str) -> str:
    """The name a file being received has until it is complete and verified.

    ``.NAME.socketeer-part``; when that would be over :data:`MAX_NAME_BYTES`,
    NAME is replaced by the SHA-256 (hex) of the name, so every name a
    path may hold has a partial.  A name that is itself 64 hex digits is
    hashed too, so it never shares a partial with the long name it is the
    SHA-256 of.
    """
    readable = f".{name}{PARTIAL_SUFFIX}"
    encoded = len(readable.encode("utf-8", "surrogateescape"))
    if encoded <= MAX_NAME_BYTES and not _SHA256_HEX.fullmatch(name):
        return readable
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
    return f".{digest}{PARTIAL_SUFFIX}"


def is_partial(name: str) -> bool:
    """Whether ``name`` is one of socketeer's partial files."""
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def join_remote(*parts: str) -> str:
    """Remote path parts joined with ``/``; empty parts (the share itself) are dropped."""
    return str(PurePosixPath(*[part for part in parts if part])) if any(parts) else ""
