"""The sdist and the wheel: built offline from the working tree and ready for an index."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from pathlib import Path

import pytest

import socketeer

ROOT = Path(__file__).resolve().parent.parent

for _tool in ("build", "twine", "setuptools", "wheel"):
    pytest.importorskip(_tool, reason="the test extra is not installed")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel): the sdist from the tree, then the wheel from the sdist, like an index."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with the installed setuptools, so no network is needed.
    result = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), ".")
    assert result.returncode == 0, result.stdout + result.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_twine_check_strict_accepts_both(dist: tuple[Path, Path]) -> None:
    result = run(sys.executable, "-m", "twine", "check", "--strict", *map(str, dist))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_holds_the_package_with_py_typed_and_no_tests(dist: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dist[1]) as archive:
        names = archive.namelist()
    assert "socketeer/py.typed" in names
    assert "socketeer/services/files/client.py" in names
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"socketeer", f"socketeer-{socketeer.__version__}.dist-info"}, top_level


def test_sdist_can_run_the_tests_and_build_the_docs(dist: tuple[Path, Path]) -> None:
    with tarfile.open(dist[0]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "tests/conftest.py",
        "tests/support.py",
        "tests/seeds/greet_client.py",
        "benchmarks/report.py",
        "docs/design.md",
        "docs/reference/sphinx_roles.py",
        "mkdocs.yml",
        "CHANGELOG.md",
        "src/socketeer/py.typed",
    ):
        assert needed in names, needed
    assert not [name for name in names if "__pycache__" in name]


def test_metadata_is_ready_for_an_index(dist: tuple[Path, Path]) -> None:
    metadata = wheel_metadata(dist[1])
    assert metadata["Version"] == socketeer.__version__
    assert metadata["License-Expression"] == "MIT"  # PEP 639
    classifiers = metadata.get_all("Classifier") or []
    for expected in ("Typing :: Typed", "Programming Language :: Python :: 3.11"):
        assert expected in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "socketeer send" in (metadata.get_payload() or "")
    # Only addresses that exist: no placeholder homepage.
    for url in metadata.get_all("Project-URL") or []:
        assert "example" not in url
        assert url.split(", ", 1)[1].startswith("https://"), url


def test_the_version_is_written_in_one_place() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    where = project["tool"]["setuptools"]["dynamic"]["version"]
    assert where == {"attr": "socketeer.__version__"}
    result = subprocess.run(
        [sys.executable, "-m", "socketeer", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == f"socketeer, version {socketeer.__version__}\n"
