"""``socketeer serve tftp``: serve a directory over TFTP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..endpoint import parse_endpoint
from ..errors import BindError
from ..services.tftp.packets import MAX_BLKSIZE, MIN_BLKSIZE
from ..services.tftp.service import TftpService
from ..services.tftp.transfer import Settings
from .params import SECONDS
from .serve import ServeOptions, run_server, serve_group, server_options

__all__ = ["DEFAULT_TFTP_ENDPOINT", "serve_tftp"]

DEFAULT_TFTP_ENDPOINT = "udp://127.0.0.1:6969"
#: Ports below this need privileges to bind.
PRIVILEGED_PORTS = 1024


@serve_group.command("tftp")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR"
)
@server_options(framing=False)
@click.option("--allow-upload", is_flag=True, help="Accept write requests (new files only).")
@click.option(
    "--max-blksize",
    type=click.IntRange(MIN_BLKSIZE, MAX_BLKSIZE),
    default=MAX_BLKSIZE,
    show_default=True,
    help="Largest block size a client may ask for.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    help="Retransmissions before a silent client's transfer is abandoned.",
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=1.0,
    show_default=True,
    help="Seconds before the first retransmission (doubling after each, up to 8x).",
)
def serve_tftp(
    options: ServeOptions,
    directory: Path,
    allow_upload: bool,
    max_blksize: int,
    retries: int,
    timeout: float,
) -> None:
    """Serve DIR over TFTP (default endpoint udp://127.0.0.1:6969).

    Read requests in octet and netascii mode; write requests only with
    --allow-upload, and never over an existing file.  Options: blksize,
    timeout, tsize, windowsize.  See docs/tftp.md.
    """
    where = options.endpoints or (parse_endpoint(DEFAULT_TFTP_ENDPOINT),)
    if any(endpoint.transport != "udp" for endpoint in where):
        raise click.BadParameter("TFTP runs over UDP: use udp://HOST:PORT", param_hint="ENDPOINTS")
    if timeout <= 0:
        raise click.BadParameter("must be > 0", param_hint="--timeout")
    settings = Settings(max_blksize=max_blksize, timeout=timeout, retries=retries)
    service = TftpService(directory, allow_upload=allow_upload, settings=settings)
    try:
        run_server(service, dataclasses.replace(options, endpoints=tuple(where)))
    except BindError as exc:
        low = [e for e in where if e.port is not None and 0 < e.port < PRIVILEGED_PORTS]
        if low and "permission denied" in str(exc):
            raise BindError(
                f"{exc} (port {low[0].port} needs root or CAP_NET_BIND_SERVICE; "
                f"the default, {DEFAULT_TFTP_ENDPOINT}, does not)"
            ) from None
        raise
