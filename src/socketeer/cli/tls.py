"""The TLS options of the command line: a server's certificate, a client's trust.

``serve`` takes ``--tls-cert``/``--tls-key`` (else a self-signed certificate
kept in the state directory) and ``--tls-client-ca``; clients take
``--tls-ca``, ``--tls-fingerprint`` and ``--tls-cert``/``--tls-key``, and
remember the fingerprints the user accepted in ``known_hosts`` there.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from ..certificates import certificate_names, self_signed
from ..endpoint import Endpoint
from ..errors import describe_os_error
from ..known_hosts import parse_fingerprint
from ..state import state_dir
from ..tls import ClientTLS, ServerTLS

__all__ = [
    "SERVER_TLS_OPTIONS",
    "announce_fingerprint",
    "ask_on_terminal",
    "client_tls_options",
    "server_tls",
]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

SERVER_TLS_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--tls-cert",
        type=_FILE,
        default=None,
        help="Certificate of tls:// endpoints (PEM, full chain; default: a self-signed one "
        "kept in the state directory).",
    ),
    click.option(
        "--tls-key", type=_FILE, default=None, help="Key of --tls-cert (default: in that file)."
    ),
    click.option(
        "--tls-client-ca",
        type=_FILE,
        default=None,
        help="Require client certificates signed by these authorities (PEM).",
    ),
]


def server_tls(
    endpoints: Sequence[Endpoint],
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None,
) -> ServerTLS | None:
    """The certificate the ``tls://`` endpoints use, loaded once to check it; None: no TLS."""
    secured = [endpoint for endpoint in endpoints if endpoint.tls]
    if not secured:
        if cert or key or client_ca:
            raise click.UsageError(
                "--tls-cert, --tls-key and --tls-client-ca need a tls:// ENDPOINT"
            )
        return None
    if key is not None and cert is None:
        raise click.UsageError("--tls-key needs --tls-cert")
    if cert is None:
        try:
            cert, key = self_signed(certificate_names(secured), state_dir() / "tls")
        except OSError as exc:
            raise click.ClickException(
                f"cannot keep a TLS certificate in {state_dir() / 'tls'}: {describe_os_error(exc)}"
            ) from None
    tls = ServerTLS(cert, key or cert, client_ca)
    try:
        tls.context()
        tls.fingerprint  # noqa: B018  (a certificate file without a certificate fails here)
    except (OSError, ValueError) as exc:
        reason = describe_os_error(exc) if isinstance(exc, OSError) else "no certificate in it"
        raise click.BadParameter(
            f"cannot use {cert} and {key or cert}: {reason}", param_hint="--tls-cert"
        ) from None
    return tls


def announce_fingerprint(tls: ServerTLS | None, out: Any = None) -> None:
    """Print ``tls fingerprint sha256 XX:...`` (after the ``listening on`` lines)."""
    if tls is not None:
        stream = out or sys.stdout
        print(f"tls fingerprint sha256 {tls.fingerprint}", file=stream)
        stream.flush()


def ask_on_terminal(question: str) -> bool:
    """Ask ``question`` on the terminal (stderr, answered on stdin): True for yes."""
    click.echo(question, err=True, nl=False)
    click.echo(" [y/N] ", err=True, nl=False)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _fingerprint(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_fingerprint(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_CLIENT_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--tls-ca",
        type=_FILE,
        default=None,
        help="tls://: trust servers signed by these authorities (PEM) instead of the system's.",
    ),
    click.option(
        "--tls-fingerprint",
        default=None,
        callback=_fingerprint,
        metavar="SHA256",
        help="tls://: trust only the certificate with this SHA-256 fingerprint.",
    ),
    click.option(
        "--tls-cert", type=_FILE, default=None, help="tls://: present this client certificate."
    ),
    click.option(
        "--tls-key", type=_FILE, default=None, help="Key of --tls-cert (default: in that file)."
    ),
]


def client_tls_options(
    protocol: str | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the client's TLS options; the command gets them as ``tls`` (a ClientTLS).

    ``protocol`` is the ALPN name offered (None: none).  On a terminal, an
    unknown certificate is shown and the user asked; elsewhere it is refused.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def wrapper(
            tls_ca: Path | None,
            tls_fingerprint: str | None,
            tls_cert: Path | None,
            tls_key: Path | None,
            **kwargs: Any,
        ) -> None:
            if tls_key is not None and tls_cert is None:
                raise click.UsageError("--tls-key needs --tls-cert")
            tls = ClientTLS(
                ca=tls_ca,
                fingerprint=tls_fingerprint,
                known_hosts=state_dir() / "known_hosts",
                ask=ask_on_terminal if sys.stdin.isatty() else None,
                cert=tls_cert,
                key=tls_key,
                alpn=(protocol,) if protocol else (),
            )
            try:
                if tls_ca is not None or tls_cert is not None:  # a bad file: say so now
                    tls.context(verify=True)
            except (OSError, ValueError) as exc:
                reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
                raise click.BadParameter(reason, param_hint="--tls-ca/--tls-cert") from None
            command(tls=tls, **kwargs)

        decorated: Callable[..., Any] = wrapper
        for option in reversed(_CLIENT_OPTIONS):
            decorated = option(decorated)
        return decorated

    return decorate
