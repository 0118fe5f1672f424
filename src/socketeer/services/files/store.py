"""The shared directory on disk: confined lookups, listings, and files received safely.

Blocking filesystem calls; the session runs them in threads.  The store
holds a descriptor of the shared directory and reaches everything through
it, one name at a time (see :mod:`.beneath`): a symlink is followed only
while every step stays inside, and nothing a local user swaps in between a
check and an open is followed.  An upload is written to a partial file
beside its target (created without following links, and locked with
``flock`` so one upload per target holds across processes), fsynced,
verified, and only then renamed over the target, so a reader never sees
half a file under the real name.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat as stat_module
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .beneath import DIRECTORY, Directories, Found, Refused, identity, lookup, walk_tree
from .hashes import Hasher, label, new_hasher
from .messages import MAX_CONTROL_SIZE, Entry, EntryType
from .paths import MAX_DEPTH, PathRefused, is_partial, partial_name, split_remote

__all__ = ["FileStore", "HashCache", "StoreError", "Upload", "hash_file", "os_error", "write_whole"]

CHUNK = 1024 * 1024
#: Tries before giving up on a name that keeps changing under a lookup.
RETRIES = 8
_NOT_FOLLOWED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


#: The most a listing may take on the wire: what a client accepts, less room for the rest.
MAX_LISTING = MAX_CONTROL_SIZE - 64 * 1024
#: An entry's bytes in a listing besides its name: type, size and mtime with their keys.
ENTRY_OVERHEAD = 96


#: What of a directory a tree gives: ``(path, names, entries)`` to the entries (None: none).
Shown = Callable[[str, tuple[str, ...], builtins.list[Entry]], builtins.list[Entry] | None]


class StoreError(Exception):
    """A request the store cannot carry out: a protocol error ``code`` and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_ERRNO_CODES = {
    errno.ENOENT: "not-found",
    errno.EACCES: "denied",
    errno.EPERM: "denied",
    errno.EROFS: "denied",
    errno.ENOSPC: "no-space",
    errno.EDQUOT: "no-space",
    errno.ENOTDIR: "not-a-directory",
    errno.EISDIR: "not-a-file",
    errno.EEXIST: "exists",
    errno.ENOTEMPTY: "not-empty",
    errno.ENAMETOOLONG: "bad-path",
    errno.ELOOP: "bad-path",
}


def os_error(exc: OSError, remote: str) -> StoreError:
    """``exc`` as the protocol error a client is told, naming the remote path."""
    code = _ERRNO_CODES.get(exc.errno or 0, "io")
    reason = exc.strerror or str(exc)
    return StoreError(code, f"{remote or '/'}: {reason[:1].lower()}{reason[1:]}")


def entry_type(mode: int) -> EntryType:
    """The protocol's name for a file's type."""
    if stat_module.S_ISREG(mode):
        return "file"
    if stat_module.S_ISDIR(mode):
        return "dir"
    return "other"


def hash_file(file: BinaryIO, end: int | None = None, hasher: Hasher | None = None) -> str:
    """The hash (SHA-256 unless ``hasher`` says) of ``file`` from its start to ``end``."""
    hasher = hasher or hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    fd, offset = file.fileno(), 0
    while end is None or offset < end:
        want = CHUNK if end is None else min(CHUNK, end - offset)
        got = os.preadv(fd, [view[:want]], offset)
        if not got:
            break
        hasher.update(view[:got])
        offset += got
    return hasher.hexdigest()


class HashCache:
    """Hashes of files already hashed, keyed by device, inode, size, mtime and ctime.

    A file rewritten in place gets a new ctime, which no one can set back
    (its mtime can be: ``touch -d``, ``tar x``, ``cp -p``), and is hashed
    again; twenty clients fetching one file hash it once.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._known: OrderedDict[tuple[str, tuple[int, int, int, int, int]], str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(st: os.stat_result) -> tuple[int, int, int, int, int]:
        """What identifies one version of a file."""
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def get(self, st: os.stat_result, hash_name: str = "sha256") -> str | None:
        """The hash (of kind ``hash_name``) of this version of the file, if known."""
        key = (hash_name, self.key(st))
        with self._lock:
            found = self._known.get(key)
            if found is not None:
                self._known.move_to_end(key)
            return found

    def put(self, st: os.stat_result, digest: str, hash_name: str = "sha256") -> None:
        """Remember ``digest`` (of kind ``hash_name``) for this version of the file."""
        with self._lock:
            self._known[(hash_name, self.key(st))] = digest
            while len(self._known) > self._capacity:
                self._known.popitem(last=False)


@dataclass
class Upload:
    """A file being received into its partial beside ``target``; see :meth:`FileStore.upload`.

    ``target`` and ``partial`` say where, for people; the upload itself
    works through ``directory``, a descriptor of the directory holding
    both, and holds the partial's lock until it is finished or abandoned.
    """

    target: Path
    partial: Path
    file: BinaryIO
    size: int
    offset: int
    mtime: float | None
    hasher: Hasher | None
    remote: str
    directory: int
    hash_name: str = "sha256"
    #: Never replace a target: one that appeared meanwhile makes the finish fail (``exists``).
    keep_existing: bool = False

    def write_all(self, chunks: list[bytes | memoryview]) -> None:
        """Append received bytes (see :meth:`hash_all`)."""
        try:
            for chunk in chunks:
                self.file.write(chunk)
        except OSError as exc:
            raise os_error(exc, self.remote) from None

    def restart(self) -> None:
        """Receive the whole file after all: what the partial held is dropped."""
        try:
            self.file.truncate(0)
        except OSError as exc:
            raise os_error(exc, self.remote) from None
        self.offset = 0
        if self.hasher is not None:
            self.hasher = new_hasher(self.hash_name)

    def hash_all(self, chunks: list[bytes | memoryview]) -> None:
        """Hash received bytes; may run beside :meth:`write_all` in another thread."""
        if self.hasher is not None:
            for chunk in chunks:
                self.hasher.update(chunk)

    def finish(self, digest: str | None) -> None:
        """Verify against ``digest``, make durable, and rename over the target.

        A mismatch deletes the partial (its bytes are wrong); any other
        failure keeps it for a resumed upload.  Either way the upload is over.
        """
        try:
            self._finish(digest)
        except OSError as exc:
            raise os_error(exc, self.remote) from None
        finally:
            self.abandon()

    def _finish(self, digest: str | None) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        written = os.fstat(self.file.fileno()).st_size
        if written != self.size:
            raise StoreError("bad-request", f"{self.remote}: got {written} of {self.size} bytes")
        if self.hasher is not None and digest is not None:
            got = self.hasher.hexdigest()
            _verify(self.remote, self.hash_name, digest, got, self.partial.name, self.directory)
        if self.mtime is not None:
            os.utime(self.file.fileno(), (self.mtime, self.mtime))
        if self.keep_existing:
            self._link_new()
        else:
            os.replace(
                self.partial.name,
                self.target.name,
                src_dir_fd=self.directory,
                dst_dir_fd=self.directory,
            )
        fsync_directory(self.directory)

    def _link_new(self) -> None:
        """The partial becomes the target only if there is none (a link cannot replace)."""
        try:
            os.link(
                self.partial.name,
                self.target.name,
                src_dir_fd=self.directory,
                dst_dir_fd=self.directory,
                follow_symlinks=False,
            )
        except FileExistsError:
            os.unlink(self.partial.name, dir_fd=self.directory)  # still locked: ours
            raise StoreError(
                "exists", f"{self.remote}: appeared during the upload; nothing was replaced"
            ) from None
        os.unlink(self.partial.name, dir_fd=self.directory)

    def abandon(self) -> None:
        """Stop receiving; what arrived stays in the partial for a resumed upload."""
        if not self.file.closed:
            with contextlib.suppress(OSError):
                self.file.flush()
            with contextlib.suppress(OSError):
                self.file.close()  # and so unlocked
        if self.directory >= 0:
            os.close(self.directory)
            self.directory = -1


def _still(remote: str, names: tuple[str, ...], where: tuple[str, ...] | None) -> None:
    """Refuse (``changed``) unless ``remote`` leads to ``where`` (None: anywhere) still."""
    if where is not None and names != where:
        raise StoreError("changed", f"{_shown(remote)}: changed while it was looked at; try again")


def fsync_directory(directory: Path | int) -> None:
    """Make a rename in ``directory`` (a path, or a descriptor of it) durable."""
    if isinstance(directory, int):
        fd = os.open(".", DIRECTORY, dir_fd=directory)
    else:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shown(remote: str) -> str:
    """A remote path short enough for a one-line message."""
    return remote if len(remote) <= 80 else f"{remote[:60]}..."


class FileStore:
    """The shared directory ``root``, seen only through remote paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        self._root_fd = os.open(self.root, DIRECTORY)
        self._closer = weakref.finalize(self, os.close, self._root_fd)
        self.hashes = HashCache()

    def close(self) -> None:
        """Let go of the shared directory (the store cannot be used after)."""
        self._closer()

    def directories(self) -> Directories:
        """Lookups for a batch of requests, each directory walked to once; close it after.

        The batch sees the tree as one walk would (see :class:`.beneath.Directories`).
        """
        return Directories(self._root_fd, str(self.root), max_depth=MAX_DEPTH)

    # paths ----------------------------------------------------------------------------

    def _names(self, remote: str, *, partial_last: bool = False) -> tuple[str, ...]:
        try:
            names = split_remote(remote, partial_last=partial_last)
        except PathRefused as exc:
            raise StoreError("bad-path", str(exc)) from None
        if len(names) > MAX_DEPTH:
            raise StoreError(
                "bad-path", f"{_shown(remote)}: deeper than {MAX_DEPTH} levels (the limit)"
            )
        return names

    def _lookup(
        self,
        remote: str,
        names: tuple[str, ...],
        *,
        follow: bool = True,
        make_dirs: bool = False,
        walks: Directories | None = None,
    ) -> Found:
        """Where ``names`` lead; refused if outside; OSError as the protocol's error.

        ``walks``: the batch's directories, reused (not with ``make_dirs``).
        """
        try:
            if walks is not None and not make_dirs:
                return walks.lookup(names, follow=follow)
            return lookup(
                self._root_fd,
                str(self.root),
                names,
                follow=follow,
                make_dirs=make_dirs,
                max_depth=MAX_DEPTH,
            )
        except Refused as exc:
            raise StoreError("bad-path", f"{_shown(remote)}: {exc}") from None
        except OSError as exc:
            raise os_error(exc, remote) from None

    def _open(
        self, remote: str, flags: int, walks: Directories | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """``remote`` opened with ``flags`` (links followed only inside), and its names."""
        names = self._names(remote)
        for _ in range(RETRIES):
            with self._lookup(remote, names, walks=walks) as found:
                if found.st is None:
                    raise _missing(remote)
                name = found.name or "."
                try:
                    return os.open(name, flags | _NO_FOLLOW, dir_fd=found.dir_fd), found.names
                except OSError as exc:
                    if exc.errno not in _NOT_FOLLOWED or not _is_link(found.dir_fd, name):
                        raise os_error(exc, remote) from None
                    # It became a symlink after it was looked at: look again.
        raise StoreError("bad-path", f"{_shown(remote)}: keeps changing; try again")

    def resolve(
        self, remote: str, *, follow: bool = True, partial_last: bool = False
    ) -> tuple[tuple[str, ...], os.stat_result | None]:
        """The names ``remote`` leads to from the shared directory, and what is there.

        Symlinks on the way are followed (and, with ``follow``, a symlink as
        the last name), so the names are the file's own path, not the way it
        was named.  Names past the last that exists are kept as given (a
        directory ``mkdir -p`` would make, an upload's new file); the status is
        then None.  Refused paths raise :class:`StoreError` as any request would.
        """
        names = self._names(remote, partial_last=partial_last)
        try:
            with self._lookup(remote, names, follow=follow) as found:
                return found.names, found.st
        except StoreError as exc:
            if exc.code not in ("not-found", "not-a-directory"):
                raise
        low, high = 0, len(names) - 1  # names[:low] exists; names[:high + 1] does not
        while low < high:
            middle = (low + high + 1) // 2
            if self._exists(remote, names[:middle]):
                low = middle
            else:
                high = middle - 1
        with self._lookup(remote, names[:low]) as found:
            return (*found.names, *names[low:]), None

    def _exists(self, remote: str, names: tuple[str, ...]) -> bool:
        try:
            with self._lookup(remote, names) as found:
                return found.st is not None
        except StoreError as exc:
            if exc.code not in ("not-found", "not-a-directory"):
                raise
            return False

    def same_file(self, first: tuple[str, ...], second: tuple[str, ...]) -> bool | None:
        """Whether two paths from the shared directory are one file; None if one is missing."""
        found = []
        for names in (first, second):
            try:
                with lookup(self._root_fd, str(self.root), names, max_depth=MAX_DEPTH) as where:
                    if where.st is None:
                        return None
                    found.append(identity(where.st))
            except (Refused, OSError):
                return None
        return found[0] == found[1]

    # reading --------------------------------------------------------------------------

    def stat(self, remote: str) -> Entry:
        """Name, type, size and mtime of ``remote``."""
        with self._lookup(remote, self._names(remote)) as found:
            if found.st is None:
                raise _missing(remote)
            name = found.names[-1] if found.names else ""
            return _entry(name, found.st)

    def list(self, remote: str, *, where: tuple[str, ...] | None = None) -> list[Entry]:
        """The entries of the directory ``remote``, sorted.

        A symlink is listed as what it points to, or as ``link`` if that is
        outside the shared directory or missing.  Partial files are listed
        with the type ``partial``.  ``where``: the names ``remote`` resolved
        to when it was checked; a directory that is elsewhere once opened (a
        link swapped in meanwhile) is not read (``changed``).
        """
        return self._list(remote, where)[0]

    def tree(
        self,
        remote: str,
        *,
        where: tuple[str, ...] | None = None,
        once: bool = False,
        shown: Shown | None = None,
    ) -> Iterator[tuple[str, builtins.list[Entry]]]:
        """Every directory of the tree ``remote`` with its entries, parents first, sorted.

        Directories are those :meth:`list` gives as ``dir`` (symlinks inside
        included); one that leads back to a directory it is inside of (a
        symlink loop) is not entered again, nor, with ``once``, one already
        listed by another way (links that would make a tree of a few
        directories list millions).  A directory below ``remote`` that
        vanished or cannot be read meanwhile is left out.  ``where`` is
        checked for ``remote`` as :meth:`list` checks it.  ``shown(path,
        names, entries)`` says what of each directory is given and walked
        into (None: nothing), knowing ``names``, where the directory really
        was when it was read (symlinks resolved), whatever ``path`` says.
        """
        todo: list[tuple[str, frozenset[tuple[int, int]]]] = [(remote, frozenset())]
        listed: set[tuple[int, int]] = set()
        while todo:
            path, above = todo.pop()
            try:
                entries, me, names = self._list(path, where if path == remote else None)
            except StoreError as exc:
                if path == remote or exc.code not in ("not-found", "denied", "not-a-directory"):
                    raise
                continue
            if me in above or me in listed:
                continue
            if once:
                listed.add(me)
            if shown is not None:
                given = shown(path, names, entries)
                if given is None:
                    continue
                entries = given
            yield path, entries
            below = above | {me}
            todo.extend(
                (f"{path}/{entry.name}" if path else entry.name, below)
                for entry in reversed(entries)
                if entry.type == "dir"
            )

    def _list(
        self, remote: str, where: tuple[str, ...] | None = None
    ) -> tuple[builtins.list[Entry], tuple[int, int], tuple[str, ...]]:
        """The sorted entries of the directory ``remote``, its identity (device, inode),
        and its names from the shared directory (``changed`` if not ``where``)."""
        fd, names = self._open(remote, os.O_RDONLY | os.O_DIRECTORY)
        entries = []
        me = (0, 0)
        size = 0  # what the listing will take on the wire, at the most
        try:
            _still(remote, names, where)
            me = identity(os.fstat(fd))
            with os.scandir(fd) as scan:
                for item in scan:
                    size += len(json.dumps(item.name)) + ENTRY_OVERHEAD
                    if size > MAX_LISTING:
                        raise StoreError(
                            "too-large",
                            f"{remote or '/'}: too many entries to list at once "
                            f"(a listing is at most {MAX_LISTING // (1024 * 1024)} MiB)",
                        )
                    lst = item.stat(follow_symlinks=False)
                    if is_partial(item.name) and stat_module.S_ISREG(lst.st_mode):
                        entries.append(Entry(item.name, "partial", lst.st_size, lst.st_mtime))
                    elif stat_module.S_ISLNK(lst.st_mode):
                        entries.append(self._link_entry((*names, item.name), lst))
                    else:
                        entries.append(_entry(item.name, lst))
        except OSError as exc:
            raise os_error(exc, remote) from None
        finally:
            os.close(fd)
        return sorted(entries, key=lambda e: e.name), me, names

    def _link_entry(self, names: tuple[str, ...], lst: os.stat_result) -> Entry:
        """A symlink as what it leads to, if that is inside and there."""
        try:
            with lookup(self._root_fd, str(self.root), names, max_depth=MAX_DEPTH) as found:
                if found.st is not None:
                    return _entry(names[-1], found.st)
        except (Refused, OSError):
            pass
        return Entry(names[-1], "link", 0, lst.st_mtime)

    def open_file(
        self, remote: str, buffering: int = -1, *, walks: Directories | None = None
    ) -> tuple[BinaryIO, os.stat_result]:
        """``remote`` opened for reading (``buffering`` as :func:`open`), with its status then.

        ``walks``: the batch's directories (see :meth:`directories`).
        """
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd, _ = self._open(remote, os.O_RDONLY | os.O_NONBLOCK, walks)
        st = os.fstat(fd)
        if not stat_module.S_ISREG(st.st_mode):
            os.close(fd)
            raise StoreError("not-a-file", f"{remote or '/'}: not a regular file")
        return os.fdopen(fd, "rb", buffering), st

    def sha256(self, file: BinaryIO, st: os.stat_result) -> str:
        """The SHA-256 of the opened ``file`` (from the cache if this version is known)."""
        return self.digest(file, st, "sha256")

    def digest(self, file: BinaryIO, st: os.stat_result, hash_name: str) -> str:
        """The hash ``hash_name`` of the opened ``file`` (cached per version of the file)."""
        known = self.hashes.get(st, hash_name)
        if known is None:
            known = hash_file(file, st.st_size, new_hasher(hash_name))
            self.hashes.put(st, known, hash_name)
        return known

    # writing --------------------------------------------------------------------------

    def upload(
        self,
        remote: str,
        size: int,
        mtime: float | None,
        verify: bool,
        force: bool,
        hash_name: str = "sha256",
        *,
        resume: bool = False,
    ) -> Upload | None:
        """Start receiving ``remote``; None when the target already holds this file.

        "This file" means the same size and modification time (rsync's quick
        check) unless ``force``.  A partial left by an interrupted upload is
        continued: the upload's offset is its size, and what it holds is
        hashed first so the whole file is verified at the end.  A partial
        another upload holds (in any process) makes this one ``busy``.
        ``resume``: an unverified upload continues its partial too (the
        client says where it stands, as HTTP's chunked uploads do).
        """
        with self._upload_target(remote) as found:
            if _holds(remote, found, size, mtime, force):
                return None
            directory = os.dup(found.dir_fd)
            target = self.root.joinpath(*found.names)
        try:
            return self._open_partial(
                directory, target, remote, size, mtime, verify, hash_name, resume
            )
        except BaseException:
            os.close(directory)
            raise

    def _open_partial(
        self,
        directory: int,
        target: Path,
        remote: str,
        size: int,
        mtime: float | None,
        verify: bool,
        hash_name: str,
        resume: bool = False,
    ) -> Upload:
        partial = target.with_name(partial_name(target.name))
        fd, claimed = _claim_partial(directory, partial.name, remote)
        file = os.fdopen(fd, "a+b")
        try:
            offset = claimed.st_size
            # Unverified, a partial someone else left (or planted) could not be
            # told from this file's own first bytes: start over.
            if offset > size or not (verify or resume):
                os.ftruncate(fd, 0)
                offset = 0
            hasher = new_hasher(hash_name) if verify else None
            if hasher is not None and offset:
                hash_file(file, offset, hasher)
        except OSError as exc:
            file.close()
            raise os_error(exc, remote) from None
        except BaseException:
            file.close()
            raise
        return Upload(
            target, partial, file, size, offset, mtime, hasher, remote, directory, hash_name
        )

    def _upload_target(self, remote: str, walks: Directories | None = None) -> Found:
        """Where an upload of ``remote`` goes (its directory must exist)."""
        names = self._names(remote)
        if not names:
            raise StoreError("not-a-file", "/: is the shared directory")
        try:
            return self._lookup(remote, names, walks=walks)
        except StoreError as exc:
            if exc.code == "not-found":
                raise StoreError(
                    "not-found", f"{remote}: no such directory on the server"
                ) from None
            raise

    def receive_whole(
        self,
        remote: str,
        data: bytes,
        mtime: float | None,
        digest: str | None,
        hash_name: str = "sha256",
        *,
        force: bool = False,
        walks: Directories,
        where: tuple[str, ...] | None = None,
    ) -> tuple[str, ...] | None:
        """A whole upload (``data``) put in place; None when the target holds it already.

        What :meth:`upload` and :meth:`Upload.finish` do, in fewer steps for
        a batch of small files: the partial is claimed the same way (what it
        held goes), written, fsynced, verified against ``digest`` (of kind
        ``hash_name``; None: not verified), stamped ``mtime`` and renamed
        over the target.
        The rename is made durable by :meth:`.beneath.Directories.sync` of
        ``walks``, once per directory for the batch: the names of the target
        are returned so a failure there can be told to its upload.
        ``where``: as for :meth:`mkdir` (the names the rights were checked at).
        """
        with self._upload_target(remote, walks) as found:
            _still(remote, found.names, where)
            if _holds(remote, found, len(data), mtime, force):
                return None
            directory, name = found.dir_fd, found.name
            assert name is not None
            partial = partial_name(name)
            fd, claimed = _claim_partial(directory, partial, remote)
            try:
                try:
                    if claimed.st_size:
                        os.ftruncate(fd, 0)  # what a partial held before goes
                    write_whole(fd, data)
                    os.fsync(fd)
                except OSError as exc:
                    raise os_error(exc, remote) from None
                if digest is not None:
                    hasher = new_hasher(hash_name)
                    hasher.update(data)
                    _verify(remote, hash_name, digest, hasher.hexdigest(), partial, directory)
                try:
                    if mtime is not None:
                        os.utime(fd, (mtime, mtime))
                    os.replace(partial, name, src_dir_fd=directory, dst_dir_fd=directory)
                except OSError as exc:
                    raise os_error(exc, remote) from None
            finally:
                os.close(fd)  # and so unlocked
            walks.renamed_into[found.names[:-1]] = directory
            return found.names

    def release(self, target: Path) -> None:
        """The upload to ``target`` has ended (its lock went with its file: nothing to do)."""

    def mkdir(self, remote: str, parents: bool, *, where: tuple[str, ...] | None = None) -> None:
        """Make the directory ``remote`` (and missing parents, with ``parents``).

        ``where``: the names ``remote`` resolved to when it was checked; if it
        leads elsewhere now (a link swapped in), nothing is made (``changed``).
        """
        names = self._names(remote)
        if not names:
            if parents:
                return
            raise StoreError("exists", "/: the shared directory exists")
        with self._lookup(remote, names, follow=parents, make_dirs=parents) as found:
            _still(remote, found.names, where)
            if parents:
                if found.st is not None and not stat_module.S_ISDIR(found.st.st_mode):
                    raise StoreError("exists", f"{remote}: exists and is not a directory")
                return
            assert found.name is not None
            try:
                os.mkdir(found.name, dir_fd=found.dir_fd)
            except OSError as exc:
                raise os_error(exc, remote) from None

    def delete(self, remote: str, recursive: bool, *, where: tuple[str, ...] | None = None) -> None:
        """Delete the file ``remote``, or the directory (empty unless ``recursive``).

        A symlink is deleted itself, not what it points to, if that is
        inside.  A partial file may be named, unless an upload holds it.
        ``where``: as for :meth:`mkdir`.
        """
        names = self._names(remote, partial_last=True)
        if not names:
            raise StoreError("denied", "the shared directory itself cannot be deleted")
        with self._lookup(remote, names, follow=False) as found:
            _still(remote, found.names, where)
            st, name, directory = found.st, found.name, found.dir_fd
            assert name is not None
            if st is None:
                raise _missing(remote)
            if stat_module.S_ISLNK(st.st_mode):
                self._lookup(remote, names).close()  # refused if it leads outside
            try:
                if is_partial(name) and stat_module.S_ISREG(st.st_mode):
                    if not _unlink_partial(directory, name):
                        raise StoreError("busy", f"{remote}: an upload is writing it")
                elif not stat_module.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=directory)
                elif recursive:
                    walk_tree(directory, name, _unlink, _rmdir)
                else:
                    os.rmdir(name, dir_fd=directory)
            except Refused as exc:
                raise StoreError("changed", f"{remote}: {exc}") from None
            except OSError as exc:
                raise os_error(exc, remote) from None

    def expire_partials(self, now: float, ttl: float) -> int:
        """Delete partial files not written to for ``ttl`` seconds before ``now``; how many.

        A partial an upload holds (in any process) is kept, however old;
        ``ttl`` 0 keeps everything.  Directories that cannot be read are
        passed over.
        """
        if ttl <= 0:
            return 0
        cutoff = now - ttl
        removed = 0

        def expire(directory: int, name: str, st: os.stat_result) -> None:
            nonlocal removed
            if is_partial(name) and stat_module.S_ISREG(st.st_mode) and st.st_mtime <= cutoff:
                with contextlib.suppress(OSError):
                    removed += _unlink_partial(directory, name, older_than=cutoff)

        with contextlib.suppress(Refused, OSError):
            walk_tree(self._root_fd, ".", expire, skip_unreadable=True)
        return removed


def _entry(name: str, st: os.stat_result) -> Entry:
    return Entry(name, entry_type(st.st_mode), st.st_size, st.st_mtime)


def _holds(remote: str, found: Found, size: int, mtime: float | None, force: bool) -> bool:
    """Whether an upload's target ``found`` holds that file already (rsync's quick check,
    unless ``force``); refused if it cannot be uploaded to."""
    st = found.st
    if found.name is None:
        raise StoreError("not-a-file", f"{remote}: is the shared directory")
    if st is not None and stat_module.S_ISDIR(st.st_mode):
        raise StoreError("not-a-file", f"{remote}: is a directory")
    return (
        st is not None
        and not force
        and st.st_size == size
        and mtime is not None
        and abs(st.st_mtime - mtime) < 1e-6
    )


def _verify(
    remote: str, hash_name: str, digest: str, got: str, partial: str, directory: int
) -> None:
    """An upload whose bytes hash to ``got`` against the ``digest`` sent: a mismatch
    deletes its ``partial`` (still locked: ours) and is refused."""
    if got == digest.lower():
        return
    os.unlink(partial, dir_fd=directory)
    raise StoreError(
        "mismatch",
        f"{remote}: {label(hash_name)} mismatch (sent {digest[:16]}..., "
        f"received {got[:16]}...); nothing was replaced",
    )


def write_whole(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a short write is continued, a failure raised)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _missing(remote: str) -> StoreError:
    return os_error(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)), remote)


def _is_link(directory: int, name: str) -> bool:
    try:
        return stat_module.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink(directory: int, name: str, st: os.stat_result) -> None:
    os.unlink(name, dir_fd=directory)


def _rmdir(directory: int, name: str) -> None:
    os.rmdir(name, dir_fd=directory)


def _claim_partial(directory: int, name: str, remote: str) -> tuple[int, os.stat_result]:
    """The partial ``name`` opened for appending and locked, and its status then; ``busy``
    if another holds it.

    Never follows a link: a symlink, or a hard link to another file, in the
    partial's place is removed and a fresh partial made.  The lock is taken
    on the file the name still refers to once it is held.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | _NO_FOLLOW
    for _ in range(RETRIES):
        try:
            fd = os.open(name, flags, 0o666, dir_fd=directory)
        except OSError as exc:
            if exc.errno in _NOT_FOLLOWED and _is_link(directory, name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=directory)
                continue
            if exc.errno == errno.EISDIR:
                raise StoreError(
                    "not-a-file", f"{remote}: a directory is in its partial file's place"
                ) from None
            raise os_error(exc, remote) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    "busy", f"{remote}: another upload of this file is running"
                ) from None
            st = os.fstat(fd)
            if not stat_module.S_ISREG(st.st_mode):
                raise StoreError(
                    "not-a-file",
                    f"{remote}: something that is not a file is in its partial file's place",
                )
            if _still_named(directory, name, st):
                if st.st_nlink == 1:
                    return fd, st
                os.unlink(name, dir_fd=directory)  # a hard link to some other file
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, remote) from None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # renamed or removed by the upload that held it: take the new one
    raise StoreError("busy", f"{remote}: its partial file keeps changing; try again")


def _still_named(directory: int, name: str, st: os.stat_result) -> bool:
    """Whether ``name`` still refers to the open file whose status is ``st``."""
    try:
        now = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return identity(now) == identity(st)


def _unlink_partial(directory: int, name: str, *, older_than: float | None = None) -> bool:
    """Delete the partial ``name`` unless an upload holds it (or it is newer than given)."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NO_FOLLOW, dir_fd=directory)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        st = os.fstat(fd)
        if older_than is not None and st.st_mtime > older_than:
            return False
        if not _still_named(directory, name, st):
            return False
        os.unlink(name, dir_fd=directory)
        return True
    finally:
        os.close(fd)
