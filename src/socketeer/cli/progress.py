"""File transfer progress on a terminal: a bar for the file, with rate and time left.

A tree gets a second bar above it: files and bytes done of the whole tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..services.files.client import TransferProgress
from ..visible import visible

__all__ = ["progress_bars"]


class _RichProgress(TransferProgress):
    """A bar for the file being transferred, and one for the whole tree: bytes, rate, time left."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._whole: TaskID | None = None
        self._files = 0  # files in the tree
        self._finished = 0  # of them done (or up to date)

    def tree(self, files: int, total: int) -> None:
        self._files, self._finished = files, 0
        self._whole = self._progress.add_task(self._counted(), total=total)

    def _counted(self) -> str:
        return f"{self._finished:,} of {self._files:,} files"

    def _tree_advance(self, count: int, *, file_done: bool = False) -> None:
        if self._whole is None:
            return
        self._finished += file_done
        self._progress.update(self._whole, advance=count, description=self._counted())

    def begin(self, name: str, total: int, done: int) -> None:
        self._task = self._progress.add_task(visible(name), total=total, completed=done)
        self._tree_advance(done)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)
        self._tree_advance(count)

    def end(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._tree_advance(0, file_done=True)

    def skip(self, name: str, size: int) -> None:
        self._tree_advance(size, file_done=True)

    def tasks(self) -> list[Task]:
        """The bars shown now: the whole tree's (if any), then the current file's."""
        return list(self._progress.tasks)


@contextmanager
def progress_bars(console: Console) -> Iterator[TransferProgress]:
    """Bars drawn on ``console`` while the block runs, gone when it ends."""
    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield _RichProgress(progress)
