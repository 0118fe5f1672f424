"""Local directories a tree's downloads land in: each opened, read and fsynced once.

A tree of small files costs little per file only if each file costs no
more than its own few system calls.  So the client opens each directory
its downloads go into once, reads its names once (a file or a partial
file that is not there needs no ``stat`` to say so), writes, stamps and
renames each file through that descriptor, and fsyncs the directory once,
after the last file renamed into it, instead of once per file.  Each file
is fsynced before its rename, so a file is never seen incomplete under its
name; a crash before the directory's fsync can at worst leave complete
partial files, which the next run verifies and renames (its ``get`` asks
from their end).
"""

from __future__ import annotations

import os
import stat as stat_module

__all__ = ["Landing", "Landings"]

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Landing:
    """One local directory, open, with the names it held when it was opened."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, _DIRECTORY)
        try:
            self._names = set(os.listdir(self.fd))
        except BaseException:
            os.close(self.fd)
            raise
        #: Downloads sent for and not yet settled that land here.
        self.in_flight = 0
        #: Something was renamed into it since it was last fsynced.
        self.renamed = False

    def status(self, name: str) -> os.stat_result | None:
        """The status of the regular file ``name`` here (symlinks followed), or None."""
        if name not in self._names:
            return None
        try:
            st = os.stat(name, dir_fd=self.fd)
        except OSError:
            return None
        return st if stat_module.S_ISREG(st.st_mode) else None

    def size(self, name: str) -> int:
        """The size of ``name`` here, 0 if there is none."""
        st = self.status(name)
        return st.st_size if st is not None else 0

    def sync(self) -> None:
        """Make the renames into this directory durable (once for all of them)."""
        if self.renamed:
            os.fsync(self.fd)
            self.renamed = False


class Landings:
    """The directories a run of downloads lands in; those done with are fsynced and closed.

    Files come in tree order, so a directory is done with once a later one
    is in use and nothing more is in flight for it: few stay open at once.
    """

    def __init__(self) -> None:
        self._open: dict[str, Landing] = {}
        self._current: Landing | None = None

    def at(self, directory: str) -> Landing | None:
        """The landing for ``directory`` (None if it cannot be opened: go by paths)."""
        landing = self._open.get(directory)
        if landing is None:
            try:
                landing = Landing(directory)
            except OSError:
                return None
            self._open[directory] = landing
        if landing is not self._current:
            previous, self._current = self._current, landing
            if previous is not None and not previous.in_flight:
                self._finish(previous)
        return landing

    def landed(self, landing: Landing) -> None:
        """A download sent for ``landing`` is settled, one way or another."""
        landing.in_flight -= 1
        if not landing.in_flight and landing is not self._current:
            self._finish(landing)

    def _finish(self, landing: Landing) -> None:
        self._open.pop(landing.path, None)
        try:
            landing.sync()
        finally:
            os.close(landing.fd)

    def close(self) -> None:
        """fsync and close every directory still open; the first failure is raised."""
        self._current = None
        failure: OSError | None = None
        for landing in list(self._open.values()):
            try:
                self._finish(landing)
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
