"""The shared directory on disk: confined lookups, listings, and files received safely.

Blocking filesystem calls; the session runs them in threads.  Every remote
path goes through :meth:`FileStore.resolve`, which refuses what
:func:`~.paths.split_remote` refuses and anything whose real path (symlinks
followed) is outside the shared directory.  An upload is written to a
partial file beside its target, fsynced, verified, and only then renamed
over the target, so a reader never sees half a file under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat as stat_module
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .messages import Entry, EntryType
from .paths import PathRefused, is_partial, partial_name, split_remote

__all__ = ["FileStore", "HashCache", "StoreError", "Upload", "hash_file", "os_error"]

CHUNK = 1024 * 1024


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


def hash_file(file: BinaryIO, end: int | None = None, hasher: hashlib._Hash | None = None) -> str:
    """SHA-256 of ``file`` from its start to ``end`` (or its end), read with ``pread``."""
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
    """SHA-256 of files already hashed, keyed by device, inode, size and mtime.

    A file rewritten in place gets a new mtime (and usually size) and is
    hashed again; twenty clients fetching one file hash it once.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._known: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(st: os.stat_result) -> tuple[int, int, int, int]:
        """What identifies one version of a file."""
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def get(self, st: os.stat_result) -> str | None:
        """The hash of this version of the file, if known."""
        with self._lock:
            found = self._known.get(self.key(st))
            if found is not None:
                self._known.move_to_end(self.key(st))
            return found

    def put(self, st: os.stat_result, sha256: str) -> None:
        """Remember ``sha256`` for this version of the file."""
        with self._lock:
            self._known[self.key(st)] = sha256
            while len(self._known) > self._capacity:
                self._known.popitem(last=False)


@dataclass
class Upload:
    """A file being received into its partial beside ``target``; see :meth:`FileStore.upload`."""

    target: Path
    partial: Path
    file: BinaryIO
    size: int
    offset: int
    mtime: float | None
    hasher: hashlib._Hash | None
    remote: str

    def write_all(self, chunks: list[bytes | memoryview]) -> None:
        """Append received bytes (see :meth:`hash_all`)."""
        try:
            for chunk in chunks:
                self.file.write(chunk)
        except OSError as exc:
            raise os_error(exc, self.remote) from None

    def hash_all(self, chunks: list[bytes | memoryview]) -> None:
        """Hash received bytes; may run beside :meth:`write_all` in another thread."""
        if self.hasher is not None:
            for chunk in chunks:
                self.hasher.update(chunk)

    def finish(self, sha256: str | None) -> None:
        """Verify against ``sha256``, make durable, and rename over the target.

        A mismatch deletes the partial (its bytes are wrong); any other
        failure keeps it for a resumed upload.
        """
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            written = os.fstat(self.file.fileno()).st_size
        except OSError as exc:
            self.abandon()
            raise os_error(exc, self.remote) from None
        self.file.close()
        if written != self.size:
            raise StoreError("bad-request", f"{self.remote}: got {written} of {self.size} bytes")
        if self.hasher is not None and sha256 is not None:
            got = self.hasher.hexdigest()
            if got != sha256.lower():
                self.partial.unlink(missing_ok=True)
                raise StoreError(
                    "mismatch",
                    f"{self.remote}: SHA-256 mismatch (sent {sha256[:16]}..., "
                    f"received {got[:16]}...); nothing was replaced",
                )
        try:
            if self.mtime is not None:
                os.utime(self.partial, (self.mtime, self.mtime))
            os.replace(self.partial, self.target)
            fsync_directory(self.target.parent)
        except OSError as exc:
            raise os_error(exc, self.remote) from None

    def abandon(self) -> None:
        """Stop receiving; what arrived stays in the partial for a resumed upload."""
        if not self.file.closed:
            with contextlib.suppress(OSError):
                self.file.flush()
            with contextlib.suppress(OSError):
                self.file.close()


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """The shared directory ``root``, seen only through remote paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        self.hashes = HashCache()
        self._receiving: set[Path] = set()
        self._lock = threading.Lock()

    # paths ----------------------------------------------------------------------------

    def resolve(self, remote: str) -> Path:
        """The real path of ``remote``; refused if it is malformed or leads outside."""
        try:
            names = split_remote(remote)
        except PathRefused as exc:
            raise StoreError("bad-path", str(exc)) from None
        path = self.root.joinpath(*names)
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise StoreError("bad-path", f"{remote}: leads outside the shared directory")
        return real

    def _stat(self, remote: str) -> tuple[Path, os.stat_result]:
        path = self.resolve(remote)
        try:
            return path, os.stat(path)
        except OSError as exc:
            raise os_error(exc, remote) from None

    # reading --------------------------------------------------------------------------

    def stat(self, remote: str) -> Entry:
        """Name, type, size and mtime of ``remote``."""
        path, st = self._stat(remote)
        name = path.name if path != self.root else ""
        return Entry(name, entry_type(st.st_mode), st.st_size, st.st_mtime)

    def list(self, remote: str) -> list[Entry]:
        """The entries of the directory ``remote``, sorted; partial files are left out.

        A symlink is listed as what it points to, or as ``link`` if that is
        outside the shared directory or missing.
        """
        path, st = self._stat(remote)
        if not stat_module.S_ISDIR(st.st_mode):
            raise StoreError("not-a-directory", f"{remote}: not a directory")
        entries = []
        try:
            with os.scandir(path) as scan:
                for item in scan:
                    if is_partial(item.name):
                        continue
                    entries.append(self._entry(path, item))
        except OSError as exc:
            raise os_error(exc, remote) from None
        return sorted(entries, key=lambda e: e.name)

    def _entry(self, directory: Path, item: os.DirEntry[str]) -> Entry:
        try:
            if item.is_symlink():
                real = Path(os.path.realpath(directory / item.name))
                if self.root not in real.parents and real != self.root:
                    lst = item.stat(follow_symlinks=False)
                    return Entry(item.name, "link", 0, lst.st_mtime)
            st = item.stat()
        except OSError:
            return Entry(item.name, "link", 0, 0.0)
        return Entry(item.name, entry_type(st.st_mode), st.st_size, st.st_mtime)

    def open_file(self, remote: str) -> tuple[BinaryIO, os.stat_result]:
        """``remote`` opened for reading, with its status at the time of opening."""
        path = self.resolve(remote)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
            file = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
        except OSError as exc:
            raise os_error(exc, remote) from None
        st = os.fstat(file.fileno())
        if not stat_module.S_ISREG(st.st_mode):
            file.close()
            raise StoreError("not-a-file", f"{remote}: not a regular file")
        return file, st

    def sha256(self, file: BinaryIO, st: os.stat_result) -> str:
        """The SHA-256 of the opened ``file`` (from the cache if this version is known)."""
        known = self.hashes.get(st)
        if known is None:
            known = hash_file(file, st.st_size)
            self.hashes.put(st, known)
        return known

    # writing --------------------------------------------------------------------------

    def upload(
        self, remote: str, size: int, mtime: float | None, verify: bool, force: bool
    ) -> Upload | None:
        """Start receiving ``remote``; None when the target already holds this file.

        "This file" means the same size and modification time (rsync's quick
        check) unless ``force``.  A partial left by an interrupted upload is
        continued: the upload's offset is its size, and what it holds is
        hashed first so the whole file is verified at the end.
        """
        target = self.resolve(remote)
        if target == self.root or not target.name:
            raise StoreError("not-a-file", f"{remote or '/'}: is the shared directory")
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise os_error(exc, remote) from None
        if st is not None and stat_module.S_ISDIR(st.st_mode):
            raise StoreError("not-a-file", f"{remote}: is a directory")
        if not target.parent.is_dir():
            raise StoreError("not-found", f"{remote}: no such directory on the server")
        if (
            st is not None
            and not force
            and st.st_size == size
            and mtime is not None
            and abs(st.st_mtime - mtime) < 1e-6
        ):
            return None
        with self._lock:
            if target in self._receiving:
                raise StoreError("busy", f"{remote}: another upload of this file is running")
            self._receiving.add(target)
        try:
            return self._open_partial(target, remote, size, mtime, verify)
        except BaseException:
            self.release(target)
            raise

    def _open_partial(
        self, target: Path, remote: str, size: int, mtime: float | None, verify: bool
    ) -> Upload:
        partial = target.with_name(partial_name(target.name))
        try:
            file = open(partial, "a+b")  # noqa: SIM115 - the Upload owns it
            offset = os.fstat(file.fileno()).st_size
            if offset > size:
                file.truncate(0)
                offset = 0
            hasher = hashlib.sha256() if verify else None
            if hasher is not None and offset:
                hash_file(file, offset, hasher)
        except OSError as exc:
            raise os_error(exc, remote) from None
        return Upload(target, partial, file, size, offset, mtime, hasher, remote)

    def release(self, target: Path) -> None:
        """The upload to ``target`` has ended, one way or another."""
        with self._lock:
            self._receiving.discard(target)

    def mkdir(self, remote: str, parents: bool) -> None:
        """Make the directory ``remote``."""
        path = self.resolve(remote)
        try:
            path.mkdir(parents=parents, exist_ok=parents)
        except OSError as exc:
            raise os_error(exc, remote) from None

    def delete(self, remote: str, recursive: bool) -> None:
        """Delete the file ``remote``, or the directory (empty unless ``recursive``)."""
        path = self.resolve(remote)
        names = split_remote(remote)  # resolve accepted it
        if names:
            # A symlink is deleted itself, not what it points to (resolve followed it).
            link = self.resolve("/".join(names[:-1])) / names[-1]
            if link.is_symlink():
                path = link
        if path == self.root:
            raise StoreError("denied", "the shared directory itself cannot be deleted")
        try:
            if path.is_dir() and not path.is_symlink():
                if recursive:
                    shutil.rmtree(path)
                else:
                    path.rmdir()
            else:
                path.unlink()
        except OSError as exc:
            raise os_error(exc, remote) from None
