"""``ls``, ``get``, ``put``, ``mkdir``, ``rm``: the network disk's commands (``serve files``
is in :mod:`.serve_files`, so that these start without the server's imports)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

import click

from ..endpoint import Endpoint
from ..services.files.client import FilesClient, FilesError
from ..services.files.hashes import DEFAULT, HASHES
from ..services.files.messages import Entry
from ..services.files.paths import join_remote
from ..tls import ClientTLS, alpn
from . import EXIT_BROKEN_PIPE
from .login import USER, credentials
from .params import SECONDS, EndpointType
from .reporter import Reporter
from .tftp_urls import EndpointOrTftpUrl, TftpUrl
from .tls import client_tls_options

__all__ = [
    "TOKEN",
    "TOKEN_ENV",
    "get_command",
    "ls_command",
    "mkdir_command",
    "put_command",
    "rm_command",
]

#: A files server's endpoint, which may open with the user to log in as (``alice@HOST:PORT``).
ENDPOINT = EndpointType(users=True)

SPOOL_CHUNK = 1024 * 1024
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
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bars, summaries or notices.")
HASH = click.option(
    "--hash",
    "hash_name",
    type=click.Choice(HASHES),
    default=DEFAULT,
    show_default=True,
    help="Verify with this hash (a server that predates BLAKE3 uses SHA-256).",
)


def _connect(
    endpoint: Endpoint,
    token: str | None,
    user: str | None,
    timeout: float,
    tls: ClientTLS,
    hash_name: str = DEFAULT,
) -> FilesClient:
    """Connect, logged in as ``user`` (or ``USER@`` of the endpoint) if one is given."""
    name, password = credentials(user)
    return FilesClient.connect(
        endpoint,
        token=token,
        timeout=timeout,
        tls=tls,
        user=name,
        password=password,
        hash=hash_name,
    )


def _remote_name(remote: str) -> str:
    return PurePosixPath(remote).name


def _contents_only(path: str) -> bool:
    """Whether a directory named so stands for its contents (rsync: ``photos/``, ``.``)."""
    return path in ("", ".") or path.endswith(("/", "/."))


def _make_local_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FilesError(f"{path}: {exc.strerror or exc}", "io") from None


# ls --------------------------------------------------------------------------------------


def _format_entry(entry: Entry) -> str:
    kind = {"file": "-", "dir": "d", "link": "l", "other": "?", "partial": "p"}[entry.type]
    try:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
    except (OverflowError, OSError, ValueError):  # a time the C library cannot show
        when = f"{entry.mtime:>16.0f}"
    suffix = "/" if entry.type == "dir" else ""
    return f"{kind} {entry.size:>14,} {when} {entry.name}{suffix}"


@click.command("ls")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote", default="")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per entry (with the hash get uses)."
)
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Also partial files of unfinished uploads."
)
@TOKEN
@USER
@TIMEOUT
@client_tls_options(alpn("files"))
def ls_command(
    endpoint: Endpoint,
    remote: str,
    as_json: bool,
    show_all: bool,
    token: str | None,
    user: str | None,
    timeout: float,
    tls: ClientTLS,
) -> None:
    """List the remote directory REMOTE (default: the shared directory) on ENDPOINT.

    Partial files (type `p`, `partial` in JSON) are uploads not finished
    yet; `rm` deletes them.
    """
    with _connect(endpoint, token, user, timeout, tls) as client:
        entry = client.stat(remote)
        entries = client.list(remote, partials=show_all) if entry.type == "dir" else [entry]
    for item in entries:
        if as_json:
            click.echo(json.dumps({**asdict(item), "hash": client.hash}, ensure_ascii=False))
        else:
            click.echo(_format_entry(item))


# get -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileUrl:
    """``[tls://]HOST:PORT/FILE`` as given to ``get``: the server and the file on it."""

    endpoint: Endpoint
    path: str


_FILE_URL = re.compile(
    r"(?P<endpoint>(?:(?:tls|tcp)://)?(?:\[[^]]*\]|[^/\[\]]*):[0-9]+)/(?P<path>.*)",
    re.IGNORECASE | re.DOTALL,
)


class EndpointOrFileUrl(EndpointOrTftpUrl):
    """What ``get`` downloads from: an endpoint, ``[tls://]HOST:PORT/FILE`` or ``tftp://``."""

    def convert(  # type: ignore[override]
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Endpoint | TftpUrl | FileUrl:
        if isinstance(value, FileUrl):
            return value
        match = _FILE_URL.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            return super().convert(value, param, ctx)
        endpoint = cast(Endpoint, super().convert(match["endpoint"], param, ctx))
        return FileUrl(endpoint, match["path"])


@click.command("get")
@click.argument("endpoint", type=EndpointOrFileUrl(users=True))
@click.argument("remote", required=False)
@click.argument("local", required=False)
@click.option("-r", "--recursive", is_flag=True, help="Fetch a whole directory.")
@click.option("--no-verify", is_flag=True, help="Skip the hash check.")
@click.option("--no-resume", is_flag=True, help="Start over instead of continuing a partial file.")
@click.option("--force", is_flag=True, help="Fetch even files that look up to date.")
@HASH
@QUIET
@TOKEN
@USER
@TIMEOUT
@client_tls_options(alpn("files"))
def get_command(
    endpoint: Endpoint | TftpUrl | FileUrl,
    remote: str | None,
    local: str | None,
    recursive: bool,
    no_verify: bool,
    no_resume: bool,
    force: bool,
    hash_name: str,
    quiet: bool,
    token: str | None,
    user: str | None,
    timeout: float,
    tls: ClientTLS,
) -> None:
    """Download REMOTE from ENDPOINT to LOCAL (default: here; - writes it to stdout).

    \b
    A directory (-r), like rsync, whether LOCAL exists or not:
      get -r EP photos  backup    ->  backup/photos/...
      get -r EP photos/ backup    ->  backup/...  (REMOTE ending in / or .: its contents)
    A file goes into LOCAL when LOCAL ends in / or is a directory:
      get    EP a.txt   backup/   ->  backup/a.txt
      get    EP a.txt   b.txt     ->  b.txt
      get    EP a.txt   -         ->  stdout
    Missing local directories are made.  An interrupted download continues
    when the same command is run again.  Files with the remote size and
    modification time already are skipped.  Every file is verified with
    BLAKE3 (--hash sha256: SHA-256); a tree is listed in one request and
    fetched with a window of requests in flight.

    The file may be part of ENDPOINT, as in a URL:
      get tls://HOST:PORT/a.txt [LOCAL]
    get tftp://HOST[:PORT]/FILE [LOCAL] downloads from a TFTP server.
    """
    if isinstance(endpoint, TftpUrl):
        from .tftp import tftp_get  # the TFTP client loads only for a TFTP server

        tftp_get(endpoint, remote, timeout, quiet)
        return
    if isinstance(endpoint, FileUrl):
        if local is not None:
            raise click.UsageError(
                f"{endpoint.path!r} is named in the URL already: give only LOCAL after it"
            )
        endpoint, remote, local = endpoint.endpoint, endpoint.path, remote
    if remote is None:
        raise click.UsageError("Missing argument 'REMOTE'.")
    to_stdout = local == "-"
    if to_stdout and recursive:
        raise click.UsageError("-r cannot write to stdout (-)")
    reporter = Reporter(quiet, upload=False, stream=to_stdout)
    with (
        _connect(endpoint, token, user, timeout, tls, hash_name) as client,
        reporter.watching(),
        _explained(client, remote, recursive),
    ):
        if to_stdout:
            _get_to_stdout(client, remote, verify=not no_verify, reporter=reporter)
            return
        files = _get_files(client, remote, local or ".", recursive)
        if len(files) > 1 or recursive:
            reporter.tree(len(files), sum(entry.size for _, _, entry in files if entry))
        for result in client.download_many(
            files, verify=not no_verify, resume=not no_resume, force=force, progress=reporter
        ):
            reporter.done(result)


@contextmanager
def _explained(client: FilesClient, remote: str, recursive: bool) -> Iterator[None]:
    """A ``get`` of something that is not a file says what it is (a directory: use -r)."""
    try:
        yield
    except FilesError as exc:
        if recursive or exc.code != "not-a-file" or client.stat(remote).type != "dir":
            raise
        raise FilesError(f"{remote or '/'}: is a directory (use -r)", "not-a-file") from None


def _get_files(
    client: FilesClient, remote: str, local: str, recursive: bool
) -> list[tuple[str, Path, Entry | None]]:
    """(remote file, local file, its entry if listed) for each file ``get`` fetches."""
    name, target = _remote_name(remote), Path(local)
    if recursive:
        try:
            tree = list(client.walk(remote))
        except FilesError as exc:
            if exc.code != "not-a-directory":
                raise
        else:
            top = target if _contents_only(remote) else target / name
            return _remote_tree(tree, remote, top)
    into = local.endswith("/") or target.is_dir()
    destination = target / name if into else target
    _make_local_dir(destination.parent)
    return [(remote, destination, None)]


def _get_to_stdout(client: FilesClient, remote: str, *, verify: bool, reporter: Reporter) -> None:
    stdout = sys.stdout.buffer
    try:
        result = client.download_to(remote, stdout, verify=verify, progress=reporter)
        stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as a filter SIGPIPE ends does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    reporter.done(result)


def _remote_tree(
    tree: list[tuple[str, Entry]], remote: str, target: Path
) -> list[tuple[str, Path, Entry | None]]:
    """The files of a listed remote tree, and where each goes; local directories are made."""
    _make_local_dir(target)
    files: list[tuple[str, Path, Entry | None]] = []
    directories: dict[str, Path] = {}  # remote directory -> local one
    for path, entry in tree:
        parent, _, name = path.rpartition("/")
        here = directories.get(parent)
        if here is None:
            relative = PurePosixPath(parent).relative_to(remote or ".").parts
            here = directories[parent] = target.joinpath(*relative)
        local = here / name
        if entry.type == "dir":
            _make_local_dir(local)
        elif entry.type == "file":
            files.append((path, local, entry))
    return files


# put -------------------------------------------------------------------------------------


@click.command("put")
@click.argument("local", type=click.Path(exists=True, allow_dash=True))
@click.argument("endpoint", type=EndpointOrTftpUrl(users=True))
@click.argument("remote", default="")
@click.option("-r", "--recursive", is_flag=True, help="Send a whole directory.")
@click.option("--no-verify", is_flag=True, help="Skip the hash check.")
@click.option("--force", is_flag=True, help="Send even files the server has already.")
@click.option("-p", "--parents", is_flag=True, help="Make missing remote directories on the way.")
@HASH
@QUIET
@TOKEN
@USER
@TIMEOUT
@client_tls_options(alpn("files"))
def put_command(
    local: str,
    endpoint: Endpoint | TftpUrl,
    remote: str,
    recursive: bool,
    no_verify: bool,
    force: bool,
    parents: bool,
    hash_name: str,
    quiet: bool,
    token: str | None,
    user: str | None,
    timeout: float,
    tls: ClientTLS,
) -> None:
    """Upload LOCAL to ENDPOINT as REMOTE (default: its name, in the shared directory).

    \b
    A directory (-r), like rsync, whether REMOTE exists or not:
      put -r photos  EP backup    ->  backup/photos/...
      put -r photos/ EP backup    ->  backup/...  (LOCAL ending in / or .: its contents)
    A file goes into REMOTE when REMOTE ends in / or is a remote directory:
      put a.txt      EP docs/     ->  docs/a.txt
      put a.txt      EP b.txt     ->  b.txt
      put -          EP b.txt     ->  b.txt, from stdin
    A remote directory that a file goes into and that does not exist is an
    error, like scp, unless -p makes it (-r makes what it needs).  Needs the
    server's token (--token or $SOCKETEER_TOKEN).  An interrupted upload
    continues when the same command is run again.  Stdin is read to its end
    first (into a temporary file, unless it is a file itself): an upload
    announces its size.  Every file is verified with BLAKE3 (--hash sha256:
    SHA-256); small files of a tree go with a window of requests in flight.

    put LOCAL tftp://HOST[:PORT]/NAME uploads to a TFTP server.
    """
    from_stdin = local == "-"
    if from_stdin and recursive:
        raise click.UsageError("-r cannot read a directory from stdin (-)")
    if isinstance(endpoint, TftpUrl):
        _put_tftp(local, endpoint, remote, recursive, timeout, quiet)
        return
    if from_stdin and (not remote or remote.endswith("/")):
        raise click.UsageError("put - needs a remote file name: put - ENDPOINT NAME")
    reporter = Reporter(quiet, upload=True, stream=from_stdin)
    with (
        _stdin_as_file(from_stdin) as stdin,  # before connecting: it may take a while
        _connect(endpoint, token, user, timeout, tls, hash_name) as client,
        reporter.watching(),
    ):
        verify = not no_verify
        try:
            if stdin is not None:
                source: Path | BinaryIO = stdin
                reporter.done(
                    client.upload(
                        source,
                        remote,
                        verify=verify,
                        force=force,
                        parents=parents,
                        progress=reporter,
                    )
                )
                return
            path = Path(local)
            if path.is_dir():
                if not recursive:
                    raise FilesError(f"{local}: is a directory (use -r)", "not-a-file")
                top = remote if _contents_only(local) else join_remote(remote, path.resolve().name)
                _put_tree(client, path, top, verify, force, reporter)
                return
            if not remote or remote.endswith("/") or _is_remote_dir(client, remote):
                remote = join_remote(remote, path.resolve().name)
            reporter.done(
                client.upload(
                    path, remote, verify=verify, force=force, parents=parents, progress=reporter
                )
            )
        except FilesError as exc:
            if exc.code == "not-found" and not parents:
                raise FilesError(f"{exc} (-p makes it)", exc.code) from None
            raise


def _put_tree(
    client: FilesClient, local: Path, target: str, verify: bool, force: bool, reporter: Reporter
) -> None:
    """Send the tree ``local`` as ``target``: directories made, then the files, pipelined."""
    directories, files, total = _local_tree(local, target)
    client.mkdirs([target, *directories])
    # What is there already (one request), so that files up to date are not even asked about.
    there = dict(client.walk(target)) if client.pipelining and not force else None
    reporter.tree(len(files), total)
    for result in client.upload_many(
        files, verify=verify, force=force, there=there, progress=reporter
    ):
        reporter.done(result)


def _put_tftp(
    local: str, url: TftpUrl, remote: str, recursive: bool, timeout: float, quiet: bool
) -> None:
    """``put LOCAL tftp://HOST:PORT/NAME``: one file (or stdin) to a TFTP server."""
    if remote or recursive:
        raise click.UsageError("put LOCAL tftp://HOST[:PORT]/NAME sends one file: no REMOTE, no -r")
    if local != "-" and Path(local).is_dir():
        raise FilesError(f"{local}: is a directory", "not-a-file")
    from .tftp import tftp_put  # the TFTP client loads only for a TFTP server

    with _stdin_as_file(local == "-") as stdin:
        if stdin is not None:
            stdin.seek(0)
            tftp_put(url, stdin, os.fstat(stdin.fileno()).st_size, timeout, quiet)
            return
        try:
            source = open(local, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise FilesError(f"{local}: {exc.strerror or exc}", "io") from None
        with source:
            tftp_put(url, source, os.fstat(source.fileno()).st_size, timeout, quiet)


@contextmanager
def _stdin_as_file(wanted: bool) -> Iterator[BinaryIO | None]:
    """Stdin as a regular file from its start: itself if it is one, else a spooled copy.

    None unless ``wanted``.
    """
    if not wanted:
        yield None
        return
    stdin = sys.stdin.buffer
    try:
        regular = stat.S_ISREG(os.fstat(stdin.fileno()).st_mode) and stdin.tell() == 0
    except (OSError, ValueError):
        regular = False
    if regular:
        yield stdin
        return
    with tempfile.TemporaryFile(prefix="socketeer-put-") as spool:
        try:
            shutil.copyfileobj(stdin, spool, SPOOL_CHUNK)
            spool.flush()
        except OSError as exc:
            raise FilesError(
                f"keeping stdin in a temporary file failed: {exc.strerror or exc}", "io"
            ) from None
        yield spool


def _is_remote_dir(client: FilesClient, remote: str) -> bool:
    try:
        return client.stat(remote).type == "dir"
    except FilesError as exc:
        if exc.code == "not-found":
            return False
        raise


def _local_tree(local: Path, target: str) -> tuple[list[str], list[tuple[Path, str]], int]:
    """The remote directories a local tree needs (parents first), where each file goes,
    and their bytes.  Like ``os.walk``: sorted, symlinks to directories made but not entered,
    what cannot be read left out."""
    directories: list[str] = []
    pairs: list[tuple[Path, str]] = []
    total = 0
    top = join_remote(target)
    todo: list[tuple[str, str]] = [(str(local), "" if top == "." else top)]
    while todo:
        here, remote = todo.pop()
        try:
            with os.scandir(here) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError:
            continue
        below = []
        for entry in entries:
            name = f"{remote}/{entry.name}" if remote else entry.name
            if _is_dir(entry):
                directories.append(name)
                if not entry.is_symlink():
                    below.append((entry.path, name))
            elif _is_file(entry):
                pairs.append((Path(entry.path), name))
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
        todo.extend(reversed(below))
    return directories, pairs, total


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


# mkdir, rm -------------------------------------------------------------------------------


@click.command("mkdir")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote")
@click.option("-p", "--parents", is_flag=True, help="Make missing parents; no error if it exists.")
@TOKEN
@USER
@TIMEOUT
@client_tls_options(alpn("files"))
def mkdir_command(
    endpoint: Endpoint,
    remote: str,
    parents: bool,
    token: str | None,
    user: str | None,
    timeout: float,
    tls: ClientTLS,
) -> None:
    """Make the directory REMOTE on ENDPOINT (needs the token, or an account's write right)."""
    with _connect(endpoint, token, user, timeout, tls) as client:
        client.mkdir(remote, parents)


@click.command("rm")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("remote")
@click.option("-r", "--recursive", is_flag=True, help="Delete a directory and everything in it.")
@TOKEN
@USER
@TIMEOUT
@client_tls_options(alpn("files"))
def rm_command(
    endpoint: Endpoint,
    remote: str,
    recursive: bool,
    token: str | None,
    user: str | None,
    timeout: float,
    tls: ClientTLS,
) -> None:
    """Delete the file or directory REMOTE on ENDPOINT (needs the token, or the delete right)."""
    with _connect(endpoint, token, user, timeout, tls) as client:
        client.delete(remote, recursive)


def _describe_read_tokens(*commands: click.Command) -> None:
    """``--token`` on commands that only read: say what it does there."""
    for command in commands:
        for param in command.params:
            if isinstance(param, click.Option) and param.name == "token":
                param.help = (
                    f"The server's write token (default: ${param.envvar}).  Reading needs "
                    "none; one given to a server that accepts uploads must be right."
                )


_describe_read_tokens(ls_command, get_command)
