"""The self-signed certificate a ``tls://`` server uses when it is given none.

Made once with ``cryptography`` (an ECDSA P-256 key, valid ten years) for
the names and addresses the server listens on, and kept in the user's state
directory (``tls/``), so a restarted server presents the same certificate and
its clients' pinned or remembered fingerprint still holds.  Each set of names
has its own certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from .endpoint import Endpoint

__all__ = ["certificate_names", "self_signed"]

_VALID_DAYS = 3650
_WILDCARDS = {None, "0.0.0.0", "::"}


def certificate_names(endpoints: Iterable[Endpoint]) -> list[str]:
    """The names and addresses a certificate for ``endpoints`` must cover.

    A wildcard (``:PORT``, ``0.0.0.0``, ``::``) stands for this machine:
    ``localhost``, its loopback addresses and its host name.
    """
    names: list[str] = []
    for endpoint in endpoints:
        if endpoint.host in _WILDCARDS:
            names += ["localhost", "127.0.0.1", "::1", socket.gethostname()]
        elif endpoint.host is not None:
            names.append(endpoint.host.split("%")[0])
    return list(dict.fromkeys(name for name in names if name))


def self_signed(names: list[str], directory: Path) -> tuple[Path, Path]:
    """The certificate and key files for ``names`` in ``directory``, made on first use."""
    tag = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
    cert, key = directory / f"self-signed-{tag}.crt", directory / f"self-signed-{tag}.key"
    if cert.exists() and key.exists():
        return cert, key
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_pem, key_pem = _generate(names)
    _write(key, key_pem, 0o600)
    _write(cert, cert_pem, 0o644)
    return cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _generate(names: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "socketeer")]
    )
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem
