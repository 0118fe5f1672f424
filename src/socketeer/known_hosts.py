"""Certificate fingerprints and the clients' ``known_hosts`` file, without I/O on sockets.

A TLS client trusts a server the way ssh does: by a certificate authority,
or by the SHA-256 fingerprint of its certificate, pinned on the command line
or remembered in ``known_hosts`` the first time the user accepted it.  A
fingerprint is written as ``openssl x509 -noout -fingerprint -sha256``
prints it (``AB:CD:...``, 32 bytes); it is accepted with or without colons,
in any case.

``known_hosts`` holds one line per server, ``HOST:PORT sha256 FINGERPRINT``
(``[::1]:9443`` for IPv6); ``#`` starts a comment.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["KnownHosts", "fingerprint", "parse_fingerprint"]

_HEX = re.compile(r"^[0-9A-Fa-f]{64}$")


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate: ``AB:CD:...`` as openssl prints it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def parse_fingerprint(text: str) -> str:
    """A fingerprint as a user typed it (colons optional, any case), in the canonical form.

    Raises ValueError with a one-line reason if it is not 32 bytes in hex.
    """
    bare = text.strip().replace(":", "").removeprefix("sha256/").removeprefix("SHA256/")
    if not _HEX.match(bare):
        raise ValueError(f'"{text}" is not a SHA-256 fingerprint (64 hex digits, colons optional)')
    bare = bare.upper()
    return ":".join(bare[i : i + 2] for i in range(0, len(bare), 2))


class KnownHosts:
    """The fingerprints a user accepted, one per ``HOST:PORT``, kept in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}
        entries: dict[str, str] = {}
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) == 3 and fields[1].lower() == "sha256":
                try:
                    entries[fields[0]] = parse_fingerprint(fields[2])
                except ValueError:
                    continue
        return entries

    def get(self, where: str) -> str | None:
        """The fingerprint remembered for ``where`` (``HOST:PORT``), or None."""
        return self._entries().get(where)

    def remember(self, where: str, fingerprint: str) -> None:
        """Add (or replace) the fingerprint of ``where``."""
        lines = []
        try:
            old = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            old = []
        for line in old:
            fields = line.split()
            if not (fields and fields[0] == where):
                lines.append(line)
        lines.append(f"{where} sha256 {fingerprint}")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
        os.replace(temporary, self.path)
