"""``socketeer serve tftp`` serves a directory over TFTP; ``get``/``put tftp://`` transfer."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

import click

from ..endpoint import parse_endpoint
from ..errors import BindError
from ..services.tftp.packets import MAX_BLKSIZE, MIN_BLKSIZE
from ..services.tftp.service import TftpService
from ..services.tftp.transfer import MAX_TRANSFERS, Settings
from ..services.tftp.transfers import Progress, download, upload
from .params import SECONDS
from .serve import ServeOptions, run_server, serve_group, server_options
from .tftp_urls import EndpointOrTftpUrl, TftpUrl, parse_tftp_url

__all__ = [
    "DEFAULT_TFTP_ENDPOINT",
    "EndpointOrTftpUrl",
    "TftpUrl",
    "parse_tftp_url",
    "serve_tftp",
    "tftp_get",
    "tftp_put",
]

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
@click.option(
    "--max-transfers",
    type=click.IntRange(1, MAX_TRANSFERS),
    default=MAX_TRANSFERS,
    show_default=True,
    help="Transfers at once, each on its own port; more are refused (error 0, server busy).",
)
def serve_tftp(
    options: ServeOptions,
    directory: Path,
    allow_upload: bool,
    max_blksize: int,
    retries: int,
    timeout: float,
    max_transfers: int,
) -> None:
    """Serve DIR over TFTP (default endpoint udp://127.0.0.1:6969).

    Read requests in octet and netascii mode; write requests only with
    --allow-upload, and never over an existing file.  Options: blksize,
    timeout, tsize, windowsize.  See docs/tftp.md.
    """
    given = _stream_options_given(click.get_current_context())
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: not for TFTP, which has no connections or messages "
            "(see --udp-rate, --timeout, --retries, --max-blksize, --max-transfers)"
        )
    where = options.endpoints or (parse_endpoint(DEFAULT_TFTP_ENDPOINT),)
    if any(endpoint.transport != "udp" for endpoint in where):
        raise click.BadParameter("TFTP runs over UDP: use udp://HOST:PORT", param_hint="ENDPOINTS")
    if timeout <= 0:
        raise click.BadParameter("must be > 0", param_hint="--timeout")
    settings = Settings(
        max_blksize=max_blksize, timeout=timeout, retries=retries, max_transfers=max_transfers
    )
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


#: ``serve`` options for connections and messages, which TFTP over UDP does not have.
STREAM_OPTIONS = ("max_conns", "max_conns_per_ip", "backlog", "idle_timeout", "max_message")


def _stream_options_given(ctx: click.Context) -> list[str]:
    """The stream-only options the user gave (on the command line or in the environment)."""
    typed = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return [
        "--" + name.replace("_", "-")
        for name in STREAM_OPTIONS
        if ctx.get_parameter_source(name) in typed
    ]


#: The options ``get tftp://`` asks for: blocks that fit an Ethernet frame, the size.
GET_OPTIONS = {"blksize": "1428", "tsize": "0", "windowsize": "8"}
#: What ``put tftp://`` asks for: the same, and tsize says the file's size.
PUT_OPTIONS = {"blksize": "1428", "windowsize": "8"}


def _retries_within(seconds: float) -> int:
    """How many retries (after 1 s, doubling to 8 s) fit in ``seconds`` of silence."""
    retries, waited = 0, 1.0
    while waited < seconds:
        retries += 1
        waited += min(2.0**retries, 8.0)
    return retries


@contextmanager
def _progress(name: str, quiet: bool) -> Iterator[Progress | None]:
    """A progress bar for ``name`` on a terminal (not with ``quiet``), as a transfer's callback."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    from .progress import progress_bars

    with progress_bars(Console(stderr=True, highlight=False)) as bars:
        shown = 0
        begun = False

        def report(done: int, total: int | None) -> None:
            nonlocal shown, begun
            if not begun:
                bars.begin(name, total or 0, 0)
                begun = True
            bars.advance(done - shown)
            shown = done

        try:
            yield report
        finally:
            bars.end()


def tftp_get(url: TftpUrl, local: str | None, timeout: float, quiet: bool) -> None:
    """Download ``url`` to ``local`` (default: its name here; ``-``: stdout)."""
    name = PurePosixPath(url.path).name
    retries = _retries_within(timeout)

    def fetch(dest: BinaryIO) -> int:
        with _progress(name, quiet) as progress:
            coroutine = download(
                url.host,
                url.port,
                url.path,
                dest,
                options=GET_OPTIONS,
                retries=retries,
                progress=progress,
            )
            return asyncio.run(coroutine)

    if local == "-":
        fetch(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(local or name)
    if target.is_dir() or (local or "").endswith("/"):
        target = target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed when complete: never half a file.
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{name}.", delete=False) as part:
        try:
            size = fetch(cast(BinaryIO, part))
        except BaseException:
            os.unlink(part.name)
            raise
    os.replace(part.name, target)
    if not quiet:
        click.echo(f"got {target} ({size} bytes)", err=True)


def tftp_put(url: TftpUrl, source: BinaryIO, size: int, timeout: float, quiet: bool) -> None:
    """Upload ``size`` bytes from ``source`` (at its start) to ``url``."""
    options = {**PUT_OPTIONS, "tsize": str(size)}
    with _progress(PurePosixPath(url.path).name, quiet) as progress:
        coroutine = upload(
            url.host,
            url.port,
            url.path,
            source,
            options=options,
            retries=_retries_within(timeout),
            progress=None if progress is None else lambda done, _: progress(done, size),
        )
        sent = asyncio.run(coroutine)
    if not quiet:
        click.echo(f"put {url.path} ({sent} bytes)", err=True)
