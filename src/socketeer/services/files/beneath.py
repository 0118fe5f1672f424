"""Paths looked up beneath a directory descriptor, one name at a time, never leaving it.

Every name is opened relative to the descriptor of the directory before it,
with ``O_NOFOLLOW``, so nothing a local user swaps in between a check and an
open (a directory replaced by a symlink, say) is ever followed by the
kernel.  Symlinks are followed here instead, by reading them and walking
their targets the same way: ``..`` goes back to the directory this walk came
from (never past the root), and an absolute target is followed only when it
spells out the root's own path.  Anything else leads outside and is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DIRECTORY",
    "MAX_LINKS",
    "Directories",
    "Found",
    "Refused",
    "identity",
    "lookup",
    "names_in",
    "walk_tree",
]

#: Symlinks one lookup follows at most (the kernel's own limit).
MAX_LINKS = 40
#: Flags for a directory on the way: no permission needed beyond search (Linux's O_PATH).
_PASS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Flags for a directory whose entries are read.
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: What opening a symlink with O_NOFOLLOW fails with (FreeBSD says EMLINK).
_A_LINK = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


class Refused(Exception):
    """A path that leads outside the root, through too many links, or too deep."""


@dataclass
class Found:
    """Where a lookup ended: a directory (open), the name in it, and what is there.

    ``name`` is None when the path is the root itself; ``st`` (not
    following a symlink) is None when nothing has that name.  ``names`` is
    the way from the root, symlinks resolved.  Close it when done.
    """

    dir_fd: int
    name: str | None
    st: os.stat_result | None
    names: tuple[str, ...]
    _owned: list[int] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Close the directories this lookup opened."""
        while self._owned:
            os.close(self._owned.pop())

    def __enter__(self) -> Found:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lookup(
    root_fd: int,
    root_path: str,
    names: Sequence[str],
    *,
    follow: bool = True,
    make_dirs: bool = False,
    max_depth: int,
) -> Found:
    """Walk ``names`` beneath ``root_fd`` (whose real path is ``root_path``).

    ``follow``: a symlink as the last name is followed too.  ``make_dirs``:
    missing directories on the way (and the last name) are created.  A
    missing or non-directory name on the way raises the ``OSError`` the
    system gave; a way outside the root, more than :data:`MAX_LINKS`
    symlinks or more than ``max_depth`` directories raise :class:`Refused`.
    """
    stack = [root_fd]  # the directories walked through, each opened from the one before
    here: list[str] = []
    todo = list(reversed(names))
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) == 1:
                    raise Refused("leads outside the shared directory")
                os.close(stack.pop())
                here.pop()
                continue
            last = not todo
            try:
                st: os.stat_result | None = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat_module.S_ISLNK(st.st_mode) and (follow or not last):
                links += 1
                if links > MAX_LINKS:
                    raise Refused("too many levels of symbolic links")
                try:
                    target = os.readlink(name, dir_fd=stack[-1])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: no longer a link; look again
                        raise
                    todo.append(name)
                    continue
                if target.startswith("/"):
                    inside = _beneath(root_path, target)
                    while len(stack) > 1:
                        os.close(stack.pop())
                    here.clear()
                    todo.extend(reversed(inside))
                else:
                    todo.extend(reversed(target.split("/")))
                continue
            if last and not (make_dirs and st is None):
                return Found(stack[-1], name, st, (*here, name), stack[1:])
            if st is None:
                if not make_dirs:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
                with contextlib.suppress(FileExistsError):  # made meanwhile: fine
                    os.mkdir(name, dir_fd=stack[-1])
                todo.append(name)
                continue
            if not stat_module.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            if len(stack) > max_depth:
                raise Refused(f"deeper than {max_depth} directories")
            try:
                fd = os.open(name, _PASS, dir_fd=stack[-1])
            except OSError as exc:
                if exc.errno not in _A_LINK:
                    raise
                links += 1  # it became a symlink since it was looked at: look again
                if links > MAX_LINKS:
                    raise Refused("too many levels of symbolic links") from None
                todo.append(name)
                continue
            stack.append(fd)
            here.append(name)
        return Found(stack[-1], None, os.fstat(stack[-1]), tuple(here), stack[1:])
    except BaseException:
        for fd in stack[1:]:
            os.close(fd)
        raise


class Directories:
    """Lookups beneath a root for a batch of requests, each directory walked to once.

    The requests waiting together (``get`` requests sent ahead, small uploads
    stored in one go) mostly name files of a few directories.  Each
    directory on their way is looked up as :func:`lookup` does and kept
    open until :meth:`close`, so the batch's lookups cost what one walk per
    directory costs: for the batch, the tree is as it was when each
    directory was first reached.  Only the last name of a path is looked at
    anew each time; a symlink there is followed by a whole :func:`lookup`.
    Every :class:`Found` given out stays usable until :meth:`close` (closing
    it does nothing).
    """

    def __init__(self, root_fd: int, root_path: str, *, max_depth: int) -> None:
        self._root = (root_fd, root_path)
        self._max_depth = max_depth
        self._open: dict[tuple[str, ...], Found] = {}
        self._held: list[Found] = []  # whole lookups (a symlink last): kept open as long
        #: Directories (by their names as looked up) something was renamed into.
        self.renamed_into: dict[tuple[str, ...], int] = {}

    def lookup(self, names: tuple[str, ...], *, follow: bool = True) -> Found:
        """:func:`lookup` of ``names`` (``make_dirs`` false), its directory kept for the next."""
        root_fd, root_path = self._root
        parent = self._directory(names[:-1]) if names and names[-1] not in ("", ".", "..") else None
        if parent is not None:
            name = names[-1]
            try:
                st: os.stat_result | None = os.stat(
                    name, dir_fd=parent.dir_fd, follow_symlinks=False
                )
            except FileNotFoundError:
                st = None
            if st is None or not stat_module.S_ISLNK(st.st_mode) or not follow:
                return Found(parent.dir_fd, name, st, (*parent.names, name))
        found = lookup(root_fd, root_path, names, follow=follow, max_depth=self._max_depth)
        self._held.append(found)
        return Found(found.dir_fd, found.name, found.st, found.names)

    def _directory(self, names: tuple[str, ...]) -> Found | None:
        """The directory ``names`` lead to, open; None if they lead to anything else."""
        found = self._open.get(names)
        if found is not None:
            return found
        if not names:
            found = Found(self._root[0], None, None, ())
        else:
            found = self._below(names) or self._walked(names)
            if found is None:
                return None
        self._open[names] = found
        return found

    def _below(self, names: tuple[str, ...]) -> Found | None:
        """A plain directory (no symlink) in the directory its parent names lead to."""
        parent = self._directory(names[:-1]) if len(names) <= self._max_depth else None
        if parent is None:
            return None
        name = names[-1]
        try:
            st = os.stat(name, dir_fd=parent.dir_fd, follow_symlinks=False)
            if not stat_module.S_ISDIR(st.st_mode):
                return None  # a symlink to follow, or not a directory: the whole lookup
            fd = os.open(name, _PASS, dir_fd=parent.dir_fd)  # swapped for a link: refused
        except OSError:
            return None
        return Found(fd, None, st, (*parent.names, name), [fd])

    def _walked(self, names: tuple[str, ...]) -> Found | None:
        """The directory ``names`` lead to, by a whole lookup from the root."""
        root_fd, root_path = self._root
        try:  # "." last: the directory itself, opened (as lookup() opens one on the way)
            found = lookup(root_fd, root_path, (*names, "."), max_depth=self._max_depth)
        except (Refused, OSError):
            return None  # a lookup of the whole path says why
        if found.name is not None:
            found.close()
            return None
        return found

    def sync(self) -> dict[tuple[str, ...], OSError]:
        """fsync each directory something was renamed into; what failed, by directory."""
        failed: dict[tuple[str, ...], OSError] = {}
        for names, fd in self.renamed_into.items():
            try:
                readable = os.open(".", DIRECTORY, dir_fd=fd)  # the walk's may be O_PATH
                try:
                    os.fsync(readable)
                finally:
                    os.close(readable)
            except OSError as exc:
                failed[names] = exc
        self.renamed_into.clear()
        return failed

    def close(self) -> None:
        """Close every directory the batch opened."""
        while self._open:
            self._open.popitem()[1].close()
        while self._held:
            self._held.pop().close()

    def __enter__(self) -> Directories:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _beneath(root_path: str, target: str) -> list[str]:
    """The names of an absolute link target below the root, or Refused."""
    root = [name for name in root_path.split("/") if name not in ("", ".")]
    names = [name for name in target.split("/") if name not in ("", ".")]
    if names[: len(root)] != root:
        raise Refused("leads outside the shared directory")
    return names[len(root) :]


def identity(st: os.stat_result) -> tuple[int, int]:
    """What tells one file from another while both exist."""
    return (st.st_dev, st.st_ino)


def names_in(fd: int) -> list[str]:
    """The names in the directory open as ``fd`` (read from its start)."""
    with os.scandir(fd) as scan:
        return [item.name for item in scan]


@dataclass
class _Level:
    name: str
    ident: tuple[int, int]
    todo: list[str]


def walk_tree(
    parent_fd: int,
    name: str,
    on_file: Callable[[int, str, os.stat_result], None],
    on_dir_done: Callable[[int, str], None] | None = None,
    *,
    skip_unreadable: bool = False,
) -> None:
    """Visit the tree ``name`` in ``parent_fd`` without recursion or a descriptor per level.

    ``on_file(dir_fd, name, st)`` for everything that is not a directory
    (symlinks are not followed); ``on_dir_done(dir_fd, name)`` for each
    directory once everything in it was visited, with the directory that
    holds it (bottom up: it can ``rmdir`` there).  Climbing back up opens
    ``..`` and checks it is the directory that was walked through; if the
    tree was moved meanwhile, :class:`Refused` stops the walk.
    ``skip_unreadable``: a directory below that cannot be opened or read is
    passed over instead of stopping the walk with its ``OSError``.
    """
    current = os.open(name, DIRECTORY, dir_fd=parent_fd)
    try:
        levels = [_Level(name, identity(os.fstat(current)), names_in(current))]
        while levels:
            level = levels[-1]
            if level.todo:
                child = level.todo.pop()
                try:
                    st = os.stat(child, dir_fd=current, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # gone meanwhile
                if not stat_module.S_ISDIR(st.st_mode):
                    on_file(current, child, st)
                    continue
                try:
                    below = os.open(child, DIRECTORY, dir_fd=current)
                    try:
                        level_below = _Level(child, identity(os.fstat(below)), names_in(below))
                    except BaseException:
                        os.close(below)
                        raise
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, *_A_LINK) or skip_unreadable:
                        continue  # gone or swapped meanwhile (not followed), or passed over
                    raise
                os.close(current)
                current = below
                levels.append(level_below)
                continue
            levels.pop()
            if not levels:
                break
            up = os.open("..", DIRECTORY, dir_fd=current)
            os.close(current)
            current = up
            if identity(os.fstat(up)) != levels[-1].ident:
                raise Refused("the directory was moved while it was being walked")
            if on_dir_done is not None:
                on_dir_done(current, level.name)
    finally:
        os.close(current)
    if on_dir_done is not None:
        on_dir_done(parent_fd, name)
