"""TLS test support: certificates made by trustme, and servers that use them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from socketeer.known_hosts import fingerprint
from socketeer.tls import ClientTLS, ServerTLS


@dataclass(frozen=True)
class Certificates:
    """A certificate authority and a server certificate it signed, as PEM files."""

    ca: Path  # the authority's certificate
    cert: Path  # the server's certificate chain
    key: Path  # the server's key
    fingerprint: str  # the server certificate's SHA-256, as openssl prints it
    authority: trustme.CA

    def server(self, **options: object) -> ServerTLS:
        return ServerTLS(self.cert, self.key, **options)  # type: ignore[arg-type]

    def client(self, **options: object) -> ClientTLS:
        return ClientTLS(ca=self.ca, **options)  # type: ignore[arg-type]

    def client_certificate(self, directory: Path, name: str = "client") -> tuple[Path, Path]:
        """A client certificate signed by the same authority: (chain, key)."""
        issued = self.authority.issue_cert(f"{name}@example.org")
        chain, key = directory / f"{name}.pem", directory / f"{name}.key"
        issued.cert_chain_pems[0].write_to_path(str(chain))
        issued.private_key_pem.write_to_path(str(key))
        return chain, key


def make_certificates(directory: Path, name: str = "server") -> Certificates:
    """A fresh authority and a server certificate for localhost, 127.0.0.1 and ::1."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", "127.0.0.1", "::1")
    ca, cert, key = (directory / f"{name}-{part}.pem" for part in ("ca", "cert", "key"))
    authority.cert_pem.write_to_path(str(ca))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    der = ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode())
    return Certificates(ca, cert, key, fingerprint(der), authority)
