"""Password hashes: scrypt from the standard library, in the PHC string format.

A hash reads ``$scrypt$ln=14,r=8,p=1$SALT$KEY`` (SALT and KEY in base64
without padding): ``ln`` is the base-2 logarithm of scrypt's cost N, ``r`` its
block size, ``p`` its parallelism, all kept in the hash so that stronger
settings can be chosen later without breaking stored hashes.  The defaults
are Django's (N = 2**14, r = 8, p = 1: 16 MiB and about 70 ms per check).
Checking compares in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_LOG_N",
    "MAX_MEMORY",
    "PasswordHash",
    "check_password",
    "hash_password",
    "parse_hash",
]

#: log2 of scrypt's cost N for new hashes.
DEFAULT_LOG_N = 14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
#: The most memory one check may take (scrypt needs 128 * r * N bytes): hashes
#: that ask for more are refused when read, so a users file cannot exhaust memory.
MAX_MEMORY = 256 * 1024 * 1024
_SHAPE = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)


@dataclass(frozen=True)
class PasswordHash:
    """A parsed scrypt hash: its settings, salt and derived key."""

    log_n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, password: str) -> bool:
        """Whether ``password`` derives this key (compared in constant time)."""
        derived = _derive(password, self.salt, self.log_n, self.r, self.p, len(self.key))
        return hmac.compare_digest(derived, self.key)

    def __str__(self) -> str:
        salt, key = _b64(self.salt), _b64(self.key)
        return f"$scrypt$ln={self.log_n},r={self.r},p={self.p}${salt}${key}"


def hash_password(password: str, *, log_n: int = DEFAULT_LOG_N, salt: bytes | None = None) -> str:
    """A new hash of ``password`` with a random salt (PHC string format)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    key = _derive(password, salt, log_n, DEFAULT_R, DEFAULT_P, KEY_BYTES)
    return str(PasswordHash(log_n, DEFAULT_R, DEFAULT_P, salt, key))


def parse_hash(text: str) -> PasswordHash:
    """Read a hash made by :func:`hash_password`; ValueError says what is wrong with it."""
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise ValueError(
            "not an scrypt hash like $scrypt$ln=14,r=8,p=1$SALT$KEY (socketeer passwd makes one)"
        )
    log_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not 1 <= log_n <= 31 or r < 1 or p < 1:
        raise ValueError("scrypt settings out of range (ln 1-31, r and p at least 1)")
    if 128 * r * (2**log_n) > MAX_MEMORY or r * p >= 2**30:
        raise ValueError(f"scrypt settings need more than {MAX_MEMORY // 2**20} MiB a check")
    try:
        salt, key = _unb64(match.group(4)), _unb64(match.group(5))
    except (binascii.Error, ValueError):
        raise ValueError("the salt or key is not base64") from None
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise ValueError("the salt is under 8 bytes, or the key not 16 to 64 bytes")
    return PasswordHash(log_n, r, p, salt, key)


def check_password(password: str, hashed: PasswordHash) -> bool:
    """Whether ``password`` is the one ``hashed`` was made from."""
    return hashed.matches(password)


def _derive(password: str, salt: bytes, log_n: int, r: int, p: int, length: int) -> bytes:
    n = 2**log_n
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * n + 2 * 1024 * 1024,
        dklen=length,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
