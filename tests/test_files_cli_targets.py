"""Where ``get`` and ``put`` put things: rsync's rule for directories, scp's for files.

A directory copied with -r lands under its own name in the destination
(``photos`` -> ``backup/photos/...``) or, named with a trailing slash, as
its contents (``photos/`` -> ``backup/...``), whether or not the destination
exists and whether or not it ends in a slash, so running a command again
puts everything in the same place (and resumes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from files_commands import succeeds, user_directory
from shares import TOKEN, Share, snapshot, write

pytestmark = pytest.mark.usefixtures("no_errors_logged")

PHOTOS = {"a.jpg": os.urandom(5000), "sub/b.txt": b"b\n"}


def tree(under: str) -> dict[str, bytes | None]:
    """The snapshot of PHOTOS copied to ``under`` ("" is the destination itself)."""
    prefix = f"{under}/" if under else ""
    found: dict[str, bytes | None] = {f"{prefix}{name}": data for name, data in PHOTOS.items()}
    found[f"{prefix}sub"] = None
    if under:
        found[under] = None
    return found


def make_photos(root: Path) -> None:
    for name, data in PHOTOS.items():
        write(root / "photos" / name, data)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return user_directory(tmp_path)


CASES = [
    pytest.param(source, destination, exists, id=f"{source}->{destination}-{exists=}")
    for source in ("photos", "photos/")
    for destination in ("backup", "backup/")
    for exists in (False, True)
]


@pytest.mark.parametrize(("source", "destination", "exists"), CASES)
def test_get_r_follows_rsync(
    share: Share, work: Path, source: str, destination: str, exists: bool
) -> None:
    make_photos(share.root)
    if exists:
        (work / "backup").mkdir()
    succeeds("get", "-r", share.endpoint, source, destination, cwd=work)
    inside = "" if source.endswith("/") else "photos"
    assert snapshot(work / "backup") == tree(inside)


@pytest.mark.parametrize(("source", "destination", "exists"), CASES)
def test_put_r_follows_rsync(
    share: Share, work: Path, source: str, destination: str, exists: bool
) -> None:
    make_photos(work)
    if exists:
        (share.root / "backup").mkdir()
    succeeds("put", "-r", source, share.endpoint, destination, token=TOKEN, cwd=work)
    inside = "" if source.endswith("/") else "photos"
    assert snapshot(share.root / "backup") == tree(inside)


def test_without_a_destination_a_directory_lands_here(share: Share, work: Path) -> None:
    make_photos(share.root)
    succeeds("get", "-r", share.endpoint, "photos", cwd=work)
    assert snapshot(work) == tree("photos")
    succeeds("put", "-r", "photos/", share.endpoint, token=TOKEN, cwd=work)  # into the share
    assert snapshot(share.root) == {**tree(""), **tree("photos")}


def test_the_same_command_twice_puts_things_in_the_same_place(share: Share, work: Path) -> None:
    """scp's rule would nest the second copy (backup/photos) inside the first (backup)."""
    make_photos(share.root)
    for _ in range(2):
        succeeds("get", "-r", share.endpoint, "photos", "backup", cwd=work)
        succeeds("put", "-r", "backup/photos", share.endpoint, "again", token=TOKEN, cwd=work)
    assert snapshot(work / "backup") == tree("photos")
    assert snapshot(share.root / "again") == tree("photos")


def test_a_file_goes_into_a_destination_ending_in_a_slash(share: Share, work: Path) -> None:
    notes = write(share.root / "docs" / "notes.txt", b"notes\n")
    succeeds("get", share.endpoint, "docs/notes.txt", "new/", cwd=work)  # made
    succeeds("get", share.endpoint, "docs/notes.txt", "new", cwd=work)  # exists: inside
    succeeds("get", share.endpoint, "docs/notes.txt", "copy.txt", cwd=work)
    succeeds("get", share.endpoint, "docs/notes.txt", cwd=work)
    assert snapshot(work) == {
        "new": None,
        "new/notes.txt": notes,
        "copy.txt": notes,
        "notes.txt": notes,
    }
