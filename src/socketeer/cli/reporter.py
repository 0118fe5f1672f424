"""What ``get`` and ``put`` tell their user on stderr, and where a broken-off transfer stopped.

Progress bars and one summary line per file appear on a terminal unless
``-q``; notices (a resumed file that did not verify is done again) appear
unless ``-q``.  When Ctrl-C or a lost connection ends a transfer, the
command says how far it got and how to resume.  Nothing here writes to
stdout: a download may be going there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from ..errors import NetworkError, SocketeerError
from ..services.files.client import TransferProgress, TransferResult
from ..services.files.hashes import label
from ..visible import visible

__all__ = ["EXIT_INTERRUPTED", "Reporter"]

#: The exit status of a command ended by Ctrl-C (128 + SIGINT), as the command line documents.
EXIT_INTERRUPTED = 130
RESUME_HINT = "run the same command again to resume"


@dataclass
class _Position:
    """How far the current transfer is."""

    name: str
    total: int
    done: int


class Reporter(TransferProgress):
    """The transfer progress given to the files client; draws, summarises and keeps count.

    ``upload``: the transfers go to the server.  ``stream``: a download goes
    to stdout (or an upload comes from stdin), so running the command again
    does not resume it.
    """

    def __init__(self, quiet: bool, *, upload: bool, stream: bool = False) -> None:
        self.quiet = quiet
        self.active = not quiet and sys.stderr.isatty()
        self._upload = upload
        self._stream = stream
        self._bars = TransferProgress()
        self._position: _Position | None = None
        self._console: Any = None
        if self.active:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    # what the client tells ------------------------------------------------------------

    def begin(self, name: str, total: int, done: int) -> None:
        self._position = _Position(name, total, done)
        self._bars.begin(name, total, done)

    def advance(self, count: int) -> None:
        if self._position is not None:
            self._position.done += count
        self._bars.advance(count)

    def end(self) -> None:
        self._bars.end()

    def tree(self, files: int, total: int) -> None:
        self._bars.tree(files, total)

    def skip(self, name: str, size: int) -> None:
        self._bars.skip(name, size)

    def restart(self, name: str) -> None:
        if self._upload:
            self.notice(f"{name}: the resumed upload did not verify; sending all of it again")
        else:
            self.notice(f"{name}: the resumed download did not verify; fetching all of it again")

    # what the command tells ------------------------------------------------------------

    @contextmanager
    def watching(self) -> Iterator[Reporter]:
        """Progress bars while the block runs; a transfer it breaks off says where it stopped.

        Ctrl-C ends the command with one line and :data:`EXIT_INTERRUPTED`;
        a network failure gets the same account appended to its message.
        """
        try:
            with self._drawing():
                yield self
        except KeyboardInterrupt:
            stopped = self._stopped()
            if stopped is None:
                raise
            newline = "\n" if sys.stderr.isatty() else ""  # after the terminal's ^C
            click.echo(f"{newline}socketeer: interrupted; {visible(stopped)}", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except NetworkError as exc:
            stopped = self._stopped()
            if stopped is None:
                raise
            raise SocketeerError(f"{exc}; {stopped}") from None

    @contextmanager
    def _drawing(self) -> Iterator[None]:
        if not self.active:
            yield
            return
        from .progress import progress_bars

        with progress_bars(self._console) as bars:
            self._bars = bars
            try:
                yield
            finally:
                self._bars = TransferProgress()

    def _stopped(self) -> str | None:
        """How far the transfer that was going on got, or None if none was."""
        position = self._position
        if position is None:
            return None
        moved = "sent" if self._upload else "wrote" if self._stream else "got"
        where = " to stdout" if self._stream and not self._upload else ""
        account = f"{moved} {position.done:,} of {position.total:,} bytes of {position.name}{where}"
        if self._stream and not self._upload:
            return account
        return f"{account}; {RESUME_HINT}"

    def done(self, result: TransferResult) -> None:
        """One transfer ended well: a summary line on a terminal."""
        self._position = None
        if not self.active:
            return
        name = visible(result.remote)
        if result.skipped:
            self._print(f"{name}: up to date")
            return
        verb = "sent" if self._upload else "received"
        resumed = f", resumed at {result.resumed_from:,}" if result.resumed_from else ""
        check = f", {label(result.hash)} verified" if result.hash else ""
        self._print(f"{name}: {verb} {result.size:,} bytes{resumed}{check}")

    def notice(self, text: str) -> None:
        """A line worth knowing about (unless quiet), on stderr whether or not a terminal."""
        if self.quiet:
            return
        line = f"socketeer: {visible(text)}"
        if self._console is not None:
            self._print(line)
        else:
            click.echo(line, err=True)

    def _print(self, text: str) -> None:
        self._console.print(text, markup=False)
