"""``serve files``, ``ls``, ``get``, ``put``, ``mkdir``, ``rm``: the network disk's commands."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any

import click

from ..endpoint import Endpoint
from ..services.files import FilesService
from ..services.files.client import FilesClient, FilesError, TransferProgress, TransferResult
from ..services.files.messages import Entry
from ..services.files.paths import join_remote
from .params import ENDPOINT, SECONDS
from .serve import ServeOptions, run_server, serve_group, server_options

__all__ = ["get_command", "ls_command", "mkdir_command", "put_command", "rm_command"]

TOKEN_ENV = "SOCKETEER_TOKEN"
TOKEN = click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Write token (default: ${TOKEN_ENV}).",
)
TIMEOUT = click.option(
    "--timeout",
    type=SECONDS,
    default=30.0,
    show_default=True,
    help="Seconds to connect, and to wait for the server at any point.",
)
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries.")


@serve_group.command("files")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR"
)
@server_options(framing=False)
@click.option(
    "--allow-upload", is_flag=True, help="Accept uploads, mkdir and delete (need --token)."
)
@TOKEN
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
    partial_ttl: float,
) -> None:
    """Share DIR: list, stat, download; with --allow-upload also upload, mkdir, delete.

    Speaks socketeer's files protocol (see `socketeer get`), and on the same
    port serves plain downloads: `echo NAME | nc -N HOST PORT > NAME`.
    """
    if allow_upload and not token:
        raise click.UsageError(f"--allow-upload needs a token: --token or ${TOKEN_ENV}")
    service = FilesService(
        directory, allow_upload=allow_upload, token=token, partial_ttl=partial_ttl
    )
    run_server(service, options, use_uvloop=False)


# progress ------------------------------------------------------------------------------


class _Reporter:
    """Progress bars and one summary line per file, on a terminal unless quiet.

    rich is imported only when there is a terminal to draw on.
    """

    def __init__(self, quiet: bool) -> None:
        self.active = not quiet and sys.stderr.isatty()
        self._console: Any = None
        if self.active:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    @contextmanager
    def bars(self) -> Iterator[TransferProgress]:
        if not self.active:
            yield TransferProgress()
            return
        from .progress import progress_bars

        with progress_bars(self._console) as progress:
            yield progress

    def done(self, result: TransferResult, verb: str) -> None:
        if not self.active:
            return
        if result.skipped:
            self._console.print(f"{result.remote}: up to date")
            return
        resumed = f", resumed at {result.resumed_from:,}" if result.resumed_from else ""
        check = ", SHA-256 verified" if result.sha256 else ""
        self._console.print(f"{result.remote}: {verb} {result.size:,} bytes{resumed}{check}")


def _remote_name(remote: str) -> str:
    return PurePosixPath(remote).name


# ls --------------------------------------------------------------------------------------


def _format_entry(entry: Entry) -> str:
    kind = {"file": "-", "dir": "d", "link": "l", "other": "?", "partial": "p"}[entry.type]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
    suffix = "/" if entry.type == "dir" else ""
    return f"{kind} {entry.size:>14,} {when} {entry.name}{suffix}"


@click.command("ls")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Also partial files of unfinished uploads."
)
@TOKEN
@TIMEOUT
def ls_command(
    endpoint: Endpoint,
    remote: str,
    as_json: bool,
    show_all: bool,
    token: str | None,
    timeout: float,
) -> None:
    """List the remote directory REMOTE (default: the shared directory) on ENDPOINT.

    Partial files (type `p`, `partial` in JSON) are uploads not finished
    yet; `rm` deletes them.
    """
    with FilesClient.connect(endpoint, token=token, timeout=timeout) as client:
        entry = client.stat(remote)
        entries = client.list(remote, partials=show_all) if entry.type == "dir" else [entry]
    for item in entries:
        click.echo(json.dumps(asdict(item), ensure_ascii=False) if as_json else _format_entry(item))


# get -------------------------------------------------------------------------------------


@click.command("get")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path), required=False)
@click.option("-r", "--recursive", is_flag=True, help="Fetch a whole directory.")
@click.option("--no-verify", is_flag=True, help="Skip the SHA-256 check.")
@click.option("--no-resume", is_flag=True, help="Start over instead of continuing a partial file.")
@click.option("--force", is_flag=True, help="Fetch even files that look up to date.")
@QUIET
@TOKEN
@TIMEOUT
def get_command(
    endpoint: Endpoint,
    remote: str,
    local: Path | None,
    recursive: bool,
    no_verify: bool,
    no_resume: bool,
    force: bool,
    quiet: bool,
    token: str | None,
    timeout: float,
) -> None:
    """Download REMOTE from ENDPOINT to LOCAL (default: its name, here).

    An interrupted download continues when the same command is run again.
    Files with the remote size and modification time already are skipped.
    """
    reporter = _Reporter(quiet)
    with FilesClient.connect(endpoint, token=token, timeout=timeout) as client:
        entry = client.stat(remote)
        name = _remote_name(remote) or "files"
        # Like scp: an existing directory receives REMOTE under its own name.
        target = local / name if local is not None and local.is_dir() else local or Path(name)
        if entry.type == "dir":
            if not recursive:
                raise FilesError(f"{remote or '/'}: is a directory (use -r)", "not-a-file")
            pairs = _remote_tree(client, remote, target)
        elif entry.type == "file":
            pairs = [(remote, target)]
        else:
            raise FilesError(f"{remote}: not a regular file", "not-a-file")
        with reporter.bars() as progress:
            for source, destination in pairs:
                destination.parent.mkdir(parents=True, exist_ok=True)
                result = client.download(
                    source,
                    destination,
                    verify=not no_verify,
                    resume=not no_resume,
                    force=force,
                    progress=progress,
                )
                reporter.done(result, "received")


def _remote_tree(client: FilesClient, remote: str, target: Path) -> list[tuple[str, Path]]:
    target.mkdir(parents=True, exist_ok=True)
    pairs = []
    for path, entry in client.walk(remote):
        local = target.joinpath(*PurePosixPath(path).relative_to(remote or ".").parts)
        if entry.type == "dir":
            local.mkdir(parents=True, exist_ok=True)
        elif entry.type == "file":
            pairs.append((path, local))
    return pairs


# put -------------------------------------------------------------------------------------


@click.command("put")
@click.argument("local", type=click.Path(exists=True, path_type=Path))
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote", default="")
@click.option("-r", "--recursive", is_flag=True, help="Send a whole directory.")
@click.option("--no-verify", is_flag=True, help="Skip the SHA-256 check.")
@click.option("--force", is_flag=True, help="Send even files the server has already.")
@click.option("-p", "--parents", is_flag=True, help="Make missing remote directories on the way.")
@QUIET
@TOKEN
@TIMEOUT
def put_command(
    local: Path,
    endpoint: Endpoint,
    remote: str,
    recursive: bool,
    no_verify: bool,
    force: bool,
    parents: bool,
    quiet: bool,
    token: str | None,
    timeout: float,
) -> None:
    """Upload LOCAL to ENDPOINT as REMOTE (default: its name, in the shared directory).

    REMOTE ending in / is a directory to put LOCAL in.  A remote directory
    that does not exist is an error, like scp, unless -p makes it.  Needs
    the server's token (--token or $SOCKETEER_TOKEN).  An interrupted
    upload continues when the same command is run again.
    """
    reporter = _Reporter(quiet)
    with FilesClient.connect(endpoint, token=token, timeout=timeout) as client:
        target = remote
        if not remote or remote.endswith("/") or _is_remote_dir(client, remote):
            target = join_remote(remote, local.resolve().name)
        if local.is_dir():
            if not recursive:
                raise FilesError(f"{local}: is a directory (use -r)", "not-a-file")
            pairs = _local_tree(client, local, target)
        else:
            pairs = [(local, target)]
        with reporter.bars() as progress:
            for source, destination in pairs:
                try:
                    result = client.upload(
                        source,
                        destination,
                        verify=not no_verify,
                        force=force,
                        parents=parents,
                        progress=progress,
                    )
                except FilesError as exc:
                    if exc.code == "not-found" and not parents:
                        raise FilesError(f"{exc} (-p makes it)", exc.code) from None
                    raise
                reporter.done(result, "sent")


def _is_remote_dir(client: FilesClient, remote: str) -> bool:
    try:
        return client.stat(remote).type == "dir"
    except FilesError as exc:
        if exc.code == "not-found":
            return False
        raise


def _local_tree(client: FilesClient, local: Path, target: str) -> list[tuple[Path, str]]:
    client.mkdir(target, parents=True)
    pairs = []
    for directory, subdirs, files in os.walk(local):
        here = Path(directory)
        relative = here.relative_to(local).parts
        for name in sorted(subdirs):
            client.mkdir(join_remote(target, *relative, name), parents=True)
        for name in sorted(files):
            if (here / name).is_file():
                pairs.append((here / name, join_remote(target, *relative, name)))
        subdirs.sort()
    return pairs


# mkdir, rm -------------------------------------------------------------------------------


@click.command("mkdir")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote")
@click.option("-p", "--parents", is_flag=True, help="Make missing parents; no error if it exists.")
@TOKEN
@TIMEOUT
def mkdir_command(
    endpoint: Endpoint, remote: str, parents: bool, token: str | None, timeout: float
) -> None:
    """Make the directory REMOTE on ENDPOINT (needs the token)."""
    with FilesClient.connect(endpoint, token=token, timeout=timeout) as client:
        client.mkdir(remote, parents)


@click.command("rm")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote")
@click.option("-r", "--recursive", is_flag=True, help="Delete a directory and everything in it.")
@TOKEN
@TIMEOUT
def rm_command(
    endpoint: Endpoint, remote: str, recursive: bool, token: str | None, timeout: float
) -> None:
    """Delete the file or directory REMOTE on ENDPOINT (needs the token)."""
    with FilesClient.connect(endpoint, token=token, timeout=timeout) as client:
        client.delete(remote, recursive)
