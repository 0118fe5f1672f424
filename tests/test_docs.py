"""The documentation site: the README, the guides and the API reference, built strictly."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

for _tool in (
    "mkdocs",
    "mkdocstrings_handlers.python",
    "mkdocs_include_markdown_plugin",
    "griffe_sphinx",
):
    pytest.importorskip(_tool, reason="the docs extra is not installed")

#: Packages whose ``__all__`` is the public API a reader looks up.
PUBLIC_PACKAGES = [
    "socketeer",
    "socketeer.services",
    "socketeer.services.files",
    "socketeer.services.chat",
]


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from mkdocs.yml, with warnings as errors."""
    site = tmp_path_factory.mktemp("site")
    result = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr
    return site


def anchors(site: Path) -> set[str]:
    ids: set[str] = set()
    for page in (site / "reference").rglob("*.html"):
        ids.update(re.findall(r'id="(socketeer[\w.]*)"', page.read_text()))
    return ids


def test_home_page_is_the_readme_with_working_links(site: Path) -> None:
    home = (site / "index.html").read_text()
    assert "Talk to the greet server" in home
    # README links into docs/ are rewritten to the pages beside the home page.
    assert 'href="design/"' in home
    assert 'href="reference/"' in home
    for guide in ("design", "files-protocol", "chat", "benchmarks", "files-benchmarks"):
        assert (site / guide / "index.html").is_file(), guide


def test_every_public_name_has_an_entry_where_it_is_defined(site: Path) -> None:
    documented = anchors(site)
    missing = []
    for package_name in PUBLIC_PACKAGES:
        package = importlib.import_module(package_name)
        for name in package.__all__:
            value = getattr(package, name)
            module = getattr(value, "__module__", None)
            qualname = getattr(value, "__qualname__", None)
            if module and qualname and not isinstance(value, ModuleType):
                where = {f"{module}.{qualname}"}  # a class or function: where it is defined
            else:  # a constant or a type alias: in the module that assigns it
                where = {anchor for anchor in documented if anchor.endswith(f".{name}")}
            if not where & documented:
                missing.append(f"{package_name}.{name}")
    assert not missing, f"public names with no entry in docs/reference: {missing}"


def test_every_library_module_has_a_reference_page(site: Path) -> None:
    documented = anchors(site)
    modules = {
        ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for path in (SRC / "socketeer").rglob("*.py")
    }
    # The command line is documented in the README; __main__ only runs it.
    library = {m for m in modules if not m.startswith("socketeer.cli") and "__main__" not in m}
    missing = sorted(library - documented)
    assert not missing, f"add a '::: MODULE' line to a page in docs/reference/ for {missing}"


def load_roles_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sphinx_roles", ROOT / "docs" / "reference" / "sphinx_roles.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_become_links_checked_like_any_other() -> None:
    griffe = pytest.importorskip("griffe")
    roles = load_roles_extension()
    package = griffe.load("socketeer", search_paths=[str(SRC)])
    files = package["services.files"]
    text = (
        "See :class:`~socketeer.host.Host`, :mod:`.messages`, :attr:`Entry.size`, "
        ":class:`LookupError` and :func:`.missing`::"
    )
    assert roles.convert(package, files, text) == (
        "See [`Host`][socketeer.host.Host], [`messages`][socketeer.services.files.messages], "
        "[`Entry.size`][socketeer.services.files.messages.Entry.size], "
        "`LookupError` and [`missing`][socketeer.services.files.missing]:"
    )


def test_a_broken_reference_fails_the_build(tmp_path: Path) -> None:
    """A reference to a missing object is an error, not a quiet hole in the site."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(
        "# Broken\n\nSee [`nope`][socketeer.visible.nope].\n\n::: socketeer.visible\n"
    )
    config = tmp_path / "mkdocs.yml"
    # The project's own settings, on a one-page site of its own.
    settings = (
        (ROOT / "mkdocs.yml")
        .read_text()
        .replace("docs_dir: docs", f"docs_dir: {docs}")
        .replace("docs/reference/", f"{ROOT}/docs/reference/")
    )
    config.write_text(re.sub(r"\nnav:\n.*?\n(?=\S)", "\n", settings, flags=re.DOTALL))
    result = mkdocs_build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "socketeer.visible.nope" in result.stderr
