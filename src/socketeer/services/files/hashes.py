"""The hashes a files transfer can be verified with, and which one a connection uses.

BLAKE3 is the default: a cryptographic hash about four times as fast as
SHA-256 on one core here, so verifying costs little beside receiving and
writing.  SHA-256 is kept for clients that ask for it (to compare with
``sha256sum``) and for clients that predate the choice (their ``hello``
names no hash).  Both hashers release the GIL while they hash a large
buffer, so hashing runs in a thread beside the one receiving.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import blake3

__all__ = ["DEFAULT", "HASHES", "LEGACY", "Hasher", "choose", "label", "new_hasher"]

#: Every hash this side can verify with, preferred first.
HASHES: tuple[str, ...] = ("blake3", "sha256")
#: What a client that names no hash gets (every peer predating the choice speaks it).
LEGACY = "sha256"
DEFAULT = "blake3"
_LABELS = {"blake3": "BLAKE3", "sha256": "SHA-256"}


class Hasher(Protocol):
    """What both hashlib's and blake3's hashers offer."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object:
        """Add bytes."""
        ...

    def hexdigest(self) -> str:
        """The hash of what was added, in lowercase hex."""
        ...


def new_hasher(name: str) -> Hasher:
    """A fresh hasher for the hash ``name`` (one of :data:`HASHES`)."""
    if name == "blake3":
        return blake3.blake3()
    if name == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown hash {name!r}")


def choose(offered: tuple[str, ...]) -> str:
    """The hash a server uses for a client that offered ``offered`` (preferred first)."""
    for name in offered:
        if name in HASHES:
            return name
    return LEGACY


def label(name: str) -> str:
    """The hash's name as people write it (``BLAKE3``, ``SHA-256``)."""
    return _LABELS.get(name, name)
