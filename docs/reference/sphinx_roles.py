"""A griffe extension: the docstrings' Sphinx roles become cross-references in the reference.

The docstrings are written the Sphinx way (``:class:`~socketeer.host.Host```,
``:meth:`Server.stop```, ``:mod:`.messages```). Each role is looked up like
Sphinx does (the target itself, then inside the object's class, module and
packages, outward) and becomes an autorefs link, so mkdocs checks it. A role
that names something in socketeer that does not exist (``socketeer.x`` or
``.x``) still becomes a link, whose missing target autorefs reports and
``mkdocs build --strict`` turns into a failed build; a role naming something
outside socketeer (``asyncio.Server``, ``LookupError``) is shown as code.
A paragraph ending in ``::`` ends in ``:``, as in Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`([^`]+)`")
LITERAL_BLOCK = re.compile(r"(\S)::$|^\s*::$", re.MULTILINE)
PACKAGE = "socketeer"


def find(root: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    """The object at the dotted ``path`` inside ``root``'s package, or ``None``."""
    parts = path.split(".")
    if parts[0] != root.name:
        return None
    current: griffe.Object | griffe.Alias = root
    for part in parts[1:]:
        try:
            current = current.members[part]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return current


def scopes(obj: griffe.Object) -> list[str]:
    """Where a name in ``obj``'s docstring is looked for, innermost first."""
    found: list[str] = []
    current: griffe.Object | None = obj
    while current is not None:
        found.append(current.path)
        current = current.parent
    return found


def resolve(root: griffe.Module, obj: griffe.Object, target: str) -> str | None:
    """The canonical path ``target`` refers to from ``obj``'s docstring, or ``None``."""
    name = target.lstrip(".")
    candidates = [name] + [f"{scope}.{name}" for scope in scopes(obj)]
    for candidate in candidates:
        found = find(root, candidate)
        if found is not None:
            try:
                return found.final_target.path if isinstance(found, griffe.Alias) else found.path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return candidate
    return None


def convert(root: griffe.Module, obj: griffe.Object, text: str) -> str:
    """``text`` with every role turned into a link, or into code where it leads outside."""

    def link(match: re.Match[str]) -> str:
        written = match.group(1)
        target = written.lstrip("~")
        title = target.rsplit(".", 1)[-1] if written.startswith("~") else target.lstrip(".")
        path = resolve(root, obj, target)
        if path is not None:
            return f"[`{title}`][{path}]"
        if target.startswith(f"{PACKAGE}."):
            return f"[`{title}`][{target}]"
        if target.startswith("."):
            return f"[`{title}`][{obj.module.path}{target}]"
        return f"`{title}`"

    text = ROLE.sub(link, text)
    return LITERAL_BLOCK.sub(lambda m: f"{m.group(1)}:" if m.group(1) else "", text)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring in a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Convert the docstrings of ``pkg`` and everything in it."""
        if pkg.name != PACKAGE:
            return
        pending: list[griffe.Object] = [pkg]
        while pending:
            obj = pending.pop()
            if obj.docstring is not None:
                obj.docstring.value = convert(pkg, obj, obj.docstring.value)
            pending.extend(m for m in obj.members.values() if not isinstance(m, griffe.Alias))
