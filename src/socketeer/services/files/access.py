"""Each files request checked against the rights of the account that sent it.

An :class:`Access` stands between one connection and the store when the
server has a users file.  Every request's path is first resolved on the
store (symlinks followed inside the shared directory, ``..`` refused, see
:meth:`.store.FileStore.resolve`); the rights are those of the resolved
path, so no link, spelling or case makes another path's rights apply.  A
refused request raises :class:`~.store.StoreError` before anything is
read or written.  Blocking, like the store: run the methods in threads.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import stat as stat_module
from collections.abc import Iterator
from typing import BinaryIO

from ...accounts import Account, Accounts, Right, rights_text
from ..chat.names import fold
from .beneath import Directories
from .messages import Entry
from .paths import join_remote
from .store import FileStore, StoreError, Upload

__all__ = ["Access"]

_DOING = {Right.READ: "read", Right.WRITE: "write to", Right.DELETE: "delete"}


class Access:
    """What ``account`` (None: not logged in) may do in ``store``, by the ``accounts`` file."""

    def __init__(self, store: FileStore, accounts: Accounts, account: Account | None) -> None:
        self.store = store
        self.accounts = accounts
        self.account = account

    def rights(self, names: tuple[str, ...]) -> Right:
        """The rights at the resolved path ``names``."""
        return self.accounts.rights(self.account, names, self.store.same_file)

    def require(self, remote: str, names: tuple[str, ...], right: Right, why: str = "") -> None:
        """Refuse unless ``right`` holds at ``names`` (which ``remote`` resolved to)."""
        if right not in self.rights(names):
            raise self.refusal(remote, right, names, why)

    def refusal(
        self, remote: str, right: Right, names: tuple[str, ...], why: str = ""
    ) -> StoreError:
        """The error for a request that needs ``right`` at ``names``."""
        have = rights_text(self.rights(names))
        shown = f"/{'/'.join(names)}"
        reason = why or f"may not {_DOING[right]} {shown}"
        if self.account is None:
            return StoreError("unauthorized", f"{remote or '/'}: anonymous users {reason}; log in")
        return StoreError(
            "forbidden", f"{remote or '/'}: {self.account.name} {reason} (rights there: {have})"
        )

    # reading ------------------------------------------------------------------------

    def list(self, remote: str) -> list[Entry]:
        """The listing, whole with the read right; on the way to a right, just that way.

        The directory read must be the one whose rights were checked: one
        swapped for a link to elsewhere in between is refused (``changed``).
        """
        names, _ = self.store.resolve(remote)
        self._shown(remote, names, [])  # refused before anything is read
        return self._shown(remote, names, self.store.list(remote, where=names))

    def tree(
        self, remote: str, *, once: bool = False
    ) -> Iterator[tuple[str, builtins.list[Entry]]]:
        """:meth:`FileStore.tree`, each directory's listing as :meth:`list` gives it.

        A directory below ``remote`` that may not be listed is left out (and
        not walked into); each one's rights are those of where it really was
        when it was read.
        """
        names, _ = self.store.resolve(remote)
        self._shown(remote, names, [])  # refused before anything is read

        def shown(
            path: str, real: tuple[str, ...], entries: builtins.list[Entry]
        ) -> builtins.list[Entry] | None:
            try:
                return self._shown(path, real, entries)
            except StoreError:
                return None

        yield from self.store.tree(remote, where=names, once=once, shown=shown)

    def _shown(
        self, remote: str, names: tuple[str, ...], entries: builtins.list[Entry]
    ) -> builtins.list[Entry]:
        """What of the directory at ``names`` the account may see (refused if nothing)."""
        if Right.READ in self.rights(names):
            return entries
        ways = self.accounts.ways(self.account, names)
        if not ways:
            raise self.refusal(remote, Right.READ, names)
        return [entry for entry in entries if fold(entry.name) in ways]

    def stat(self, remote: str) -> Entry:
        """With the read right, anything; else a directory one may use or pass through."""
        names, st = self.store.resolve(remote)
        rights = self.rights(names)
        if Right.READ in rights:
            return self.store.stat(remote)
        if st is None and rights:
            return self.store.stat(remote)  # not found: say so, the upload goes on
        usable = rights or self.accounts.ways(self.account, names)
        if usable and st is not None and stat_module.S_ISDIR(st.st_mode):
            return self.store.stat(remote)
        raise self.refusal(remote, Right.READ, names)

    def open_file(
        self, remote: str, *, walks: Directories | None = None
    ) -> tuple[BinaryIO, os.stat_result]:
        """Open for a download: needs the read right.

        The file opened must be the one whose rights were checked: a name
        swapped for a link to elsewhere in between is refused (``changed``).
        ``walks``: the batch's directories (see :meth:`.store.FileStore.directories`).
        """
        names, checked = self.store.resolve(remote)
        self.require(remote, names, Right.READ)
        file, st = self.store.open_file(remote, walks=walks)
        if checked is None or (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
            file.close()
            raise StoreError("changed", f"{remote}: changed while it was opened; try again")
        return file, st

    # writing ------------------------------------------------------------------------

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
        """Start an upload: a new file needs the write right, replacing one also delete.

        The upload must land where the rights were checked (``changed`` if not).
        """
        names = self.may_upload(remote, size)
        upload = self.store.upload(remote, size, mtime, verify, force, hash_name, resume=resume)
        if upload is not None and upload.target.relative_to(self.store.root).parts != names:
            # A directory on the way was swapped for a link to elsewhere after the check:
            # leave nothing there (a partial that holds bytes was there before: keep it).
            if upload.offset == 0:
                with contextlib.suppress(OSError):
                    os.unlink(upload.partial.name, dir_fd=upload.directory)
            upload.abandon()
            raise StoreError("changed", f"{remote}: changed while it was opened; try again")
        return upload

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
    ) -> tuple[str, ...] | None:
        """:meth:`.store.FileStore.receive_whole`, as :meth:`upload` allows it, only where
        the rights were checked (``changed`` if it would land elsewhere)."""
        names = self.may_upload(remote, len(data))
        return self.store.receive_whole(
            remote, data, mtime, digest, hash_name, force=force, walks=walks, where=names
        )

    def may_upload(self, remote: str, size: int | None = None) -> tuple[str, ...]:
        """Refuse an upload of ``remote`` (of ``size`` bytes, when known) the rights do not
        allow, before anything is made; the names it resolves to, if allowed."""
        names, st = self.store.resolve(remote)
        self.require(remote, names, Right.WRITE)
        refusal = None if size is None else self.accounts.upload_refusal(self.account, names, size)
        if refusal:
            raise StoreError("forbidden", f"{remote}: {refusal}")
        if st is not None and Right.DELETE not in self.rights(names):
            raise self.refusal(
                remote, Right.DELETE, names, f"may not replace /{'/'.join(names)}, which exists"
            )
        return names

    def mkdir(self, remote: str, parents: bool) -> None:
        """Make a directory: needs the write right where it is made."""
        names, _ = self.store.resolve(remote, follow=parents)
        self.require(remote, names, Right.WRITE)
        self.store.mkdir(remote, parents, where=names)

    def delete(self, remote: str, recursive: bool) -> None:
        """Delete: needs the delete right there, and, for a tree, everywhere below."""
        names, st = self.store.resolve(remote, follow=False, partial_last=True)
        self.require(remote, names, Right.DELETE)
        tree = recursive and st is not None and stat_module.S_ISDIR(st.st_mode)
        if tree and Right.DELETE not in self.accounts.tree_rights(self.account, names):
            why = f"may not delete everything below /{join_remote(*names)}"
            raise self.refusal(remote, Right.DELETE, names, why)
        self.store.delete(remote, recursive, where=names)
