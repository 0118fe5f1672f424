"""A directory of the share as a page and as JSON, sans-IO.

The page works without JavaScript: names are links (HTML-escaped and
percent-encoded, so a file named ``<img src=x onerror=...>`` is text),
columns sort through links, breadcrumbs lead up, and when the visitor may
write there are plain forms to upload, make a directory and delete.  The
script shipped beside it only adds drag and drop, progress and resumable
chunked uploads.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from ..services.files.messages import Entry
from ..visible import visible

__all__ = [
    "SORT_KEYS",
    "ListingView",
    "human_size",
    "listing_json",
    "render_listing",
    "shown_name",
]

#: The columns a listing sorts by.
SORT_KEYS = ("name", "size", "modified")


@dataclass(frozen=True)
class ListingView:
    """How to show a directory: sorted by ``sort``, and what the visitor may do."""

    path: str
    sort: str = "name"
    descending: bool = False
    #: The visitor may upload, make directories and delete.
    writable: bool = False
    #: The server takes logins (it has a token or accounts).
    can_log_in: bool = False
    #: The server has accounts: the login form asks for a user and a password.
    accounts: bool = False
    #: The account the visitor is logged in as.
    user: str | None = None
    #: The visitor has a login cookie (and may log out).
    logged_in: bool = False


def shown_name(name: str) -> str:
    """A name as a page shows it: escaped wherever it could pass for another name.

    Besides :func:`~socketeer.visible.visible`'s escapes: spaces at either
    end (a link shows none), and every character past ASCII of a name not
    in Unicode's composed form (NFC), so ``cafe\\u0301`` (decomposed) is
    not taken for ``café``, the composed name beside it.
    """
    text = visible(name)
    if unicodedata.normalize("NFC", name) != name:
        text = "".join(c if c.isascii() else f"\\u{ord(c):04x}" for c in text)
    core = text.strip(" ")
    if not core:
        return "\\x20" * len(text)
    lead, trail = len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))
    return "\\x20" * lead + core + "\\x20" * trail


def human_size(size: int) -> str:
    """``1.5 MiB``, ``512 B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _when(mtime: float) -> str:
    try:
        return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "?"


def _href(path: str, name: str = "", directory: bool = False) -> str:
    parts = [p for p in (path, name) if p]
    url = "/" + quote("/".join(parts), safe="/", errors="surrogateescape")
    if directory and parts:
        url += "/"
    return url


def _sorted(entries: Sequence[Entry], view: ListingView) -> list[Entry]:
    shown = [e for e in entries if e.type != "partial"]
    if view.sort == "size":
        shown.sort(key=lambda e: (e.size, e.name), reverse=view.descending)
    elif view.sort == "modified":
        shown.sort(key=lambda e: (e.mtime, e.name), reverse=view.descending)
    else:
        shown.sort(key=lambda e: e.name, reverse=view.descending)
    shown.sort(key=lambda e: e.type != "dir")  # directories first; the sort is stable
    return shown


def _column(label: str, key: str, view: ListingView) -> str:
    descending = key == view.sort and not view.descending
    arrow = ""
    if key == view.sort:
        arrow = " ↓" if view.descending else " ↑"
    order = "desc" if descending else "asc"
    return f'<th scope="col"><a href="?sort={key}&amp;order={order}">{label}{arrow}</a></th>'


def _breadcrumbs(path: str) -> str:
    crumbs = ['<a href="/">share</a>']
    names = path.split("/") if path else []
    for index, name in enumerate(names):
        target = _href("/".join(names[: index + 1]), directory=True)
        crumbs.append(f'<a href="{escape(target)}">{escape(shown_name(name))}</a>')
    return ' <span aria-hidden="true">/</span> '.join(crumbs)


def render_listing(entries: Sequence[Entry], view: ListingView) -> str:
    """The directory's page."""
    path = view.path
    title = "/" + "/".join(map(shown_name, path.split("/"))) + ("/" if path else "")
    rows = []
    if path:
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        rows.append(
            f'<tr><td><a href="{escape(_href(parent, directory=True) if parent else "/")}">'
            '../</a></td><td class="size"></td><td class="when"></td><td></td></tr>'
        )
    for entry in _sorted(entries, view):
        is_dir = entry.type == "dir"
        href = escape(_href(path, entry.name, directory=is_dir))
        name = escape(shown_name(entry.name)) + ("/" if is_dir else "")
        size = "" if is_dir else f'<span title="{entry.size} bytes">{human_size(entry.size)}</span>'
        actions = ""
        if not is_dir and entry.type == "file":
            actions = f'<a href="{href}?download" download>download</a>'
        elif is_dir:
            actions = f'<a href="{href}?zip">zip</a>'
        if view.writable:
            actions += (
                f' <form method="post" action="{href}?delete" class="inline">'
                '<button type="submit" class="danger">delete</button></form>'
            )
        rows.append(
            f'<tr class="{escape(entry.type)}"><td class="name"><a href="{href}">{name}</a></td>'
            f'<td class="size">{size}</td><td class="when">{_when(entry.mtime)}</td>'
            f'<td class="actions">{actions}</td></tr>'
        )
    here = escape(_href(path, directory=True) if path else "/")
    tools = _tools(view, here)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/.socketeer/style.css">'
        '<script src="/.socketeer/files.js" defer></script></head>'
        f'<body data-path="{here}" data-writable="{"1" if view.writable else ""}">'
        f'<header><nav class="crumbs" aria-label="breadcrumbs">{_breadcrumbs(path)}</nav>'
        f'<p class="json"><a href="?json">JSON</a> · <a href="?zip">download all (zip)</a></p>'
        f"</header><main>{tools}"
        '<table id="listing"><thead><tr>'
        f"{_column('Name', 'name', view)}{_column('Size', 'size', view)}"
        f"{_column('Modified (UTC)', 'modified', view)}"
        '<th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></main></body></html>"
    )


def _tools(view: ListingView, here: str) -> str:
    """The forms above the table: who is logged in, upload, make a directory, log in or out."""
    parts = []
    if view.user is not None:
        parts.append(f'<p class="row">logged in as {escape(visible(view.user))}</p>')
    if view.writable:
        parts.append(
            f'<form method="post" action="{here}?upload" enctype="multipart/form-data" '
            'id="upload-form">'
            '<div class="drop" id="drop">Drop files or folders here, or pick '
            '<label>files <input type="file" name="file" multiple id="file-input"></label> '
            '<label>a folder <input type="file" name="file" multiple webkitdirectory '
            'id="folder-input"></label></div>'
            '<button type="submit">Upload</button></form>'
            '<ul id="progress" class="progress" aria-live="polite"></ul>'
            f'<form method="post" action="{here}?mkdir" class="row">'
            '<input name="name" placeholder="new directory" aria-label="new directory" required>'
            '<button type="submit">Make directory</button></form>'
        )
    if view.logged_in or (view.writable and not view.accounts):
        parts.append(
            '<form method="post" action="/.socketeer/logout" class="row">'
            '<button type="submit">Log out</button></form>'
        )
    elif view.can_log_in and view.accounts and view.user is None:
        parts.append(
            '<form method="post" action="/.socketeer/login" class="row">'
            f'<input type="hidden" name="next" value="{here}">'
            '<input name="user" placeholder="user" aria-label="user" autocomplete="username">'
            '<input type="password" name="password" placeholder="password" '
            'aria-label="password" autocomplete="current-password" required>'
            '<button type="submit">Log in</button></form>'
        )
    elif view.can_log_in and not view.writable and not view.accounts:
        parts.append(
            '<form method="post" action="/.socketeer/login" class="row">'
            f'<input type="hidden" name="next" value="{here}">'
            '<input type="password" name="token" placeholder="token" aria-label="token" '
            'autocomplete="current-password" required>'
            '<button type="submit">Log in to upload</button></form>'
        )
    if not parts:
        return ""
    section = '<section class="tools" id="tools">' if view.writable else '<section class="tools">'
    return section + "".join(parts) + "</section>"


def listing_json(path: str, entries: Sequence[Entry]) -> bytes:
    """The directory as JSON: ``{"path": ..., "entries": [{name, type, size, mtime}, ...]}``."""
    return (
        json.dumps(
            {
                "path": path,
                "entries": [
                    {"name": e.name, "type": e.type, "size": e.size, "mtime": e.mtime}
                    for e in entries
                ],
            },
            ensure_ascii=False,
        ).encode("utf-8", "surrogateescape")
        + b"\n"
    )
