"""``serve files``: share a directory (the network disk's server)."""

from __future__ import annotations

from pathlib import Path

import click

from ..accounts import Accounts
from ..services.files import FilesService
from .files import TOKEN, TOKEN_ENV
from .login import USERS
from .params import SECONDS
from .serve import ServeOptions, run_server, serve_group, server_options

__all__ = ["serve_files"]


@serve_group.command("files")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR"
)
@server_options(framing=False)
@click.option(
    "--allow-upload", is_flag=True, help="Accept uploads, mkdir and delete (need --token)."
)
@TOKEN
@USERS
@click.option(
    "--partial-ttl",
    type=SECONDS,
    default=86400.0,
    show_default=True,
    help="Delete partial files of uploads abandoned this long (seconds; 0 = never).",
)
def serve_files(
    options: ServeOptions,
    directory: Path,
    allow_upload: bool,
    token: str | None,
    users: Accounts | None,
    partial_ttl: float,
) -> None:
    """Share DIR: list, stat, download; with --allow-upload also upload, mkdir, delete.

    Speaks socketeer's files protocol (see `socketeer get`), and on the same
    port serves plain downloads (`echo NAME | nc -N HOST PORT > NAME`) and
    browsers, curl and wget over HTTP: open the printed http:// address.
    With --users, clients log in (--user) and get their rights per path
    (plain downloads then get what anonymous users may read); the token
    of --allow-upload --token still allows everything.
    """
    if allow_upload and not token:
        raise click.UsageError(f"--allow-upload needs a token: --token or ${TOKEN_ENV}")
    service = FilesService(
        directory,
        allow_upload=allow_upload,
        token=token,
        partial_ttl=partial_ttl,
        accounts=users,
    )
    run_server(service, options, use_uvloop=False, browsable=True)
