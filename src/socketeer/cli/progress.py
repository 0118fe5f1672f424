"""File transfer progress on a terminal: one rich bar per transfer, with rate and time left."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..services.files.client import TransferProgress
from ..visible import visible

__all__ = ["progress_bars"]


class _RichProgress(TransferProgress):
    """One bar per transfer: bytes, rate, time left."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def begin(self, name: str, total: int, done: int) -> None:
        self._task = self._progress.add_task(visible(name), total=total, completed=done)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)

    def end(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None


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
