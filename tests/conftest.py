"""Fixtures: socketeer servers in a background thread or as a real process; shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from shares import TOKEN, ServeShare, Share
from socketeer import Endpoint, ServerConfig
from socketeer.service import Service
from socketeer.services import make_service
from socketeer.services.files import FilesService
from support import ServeInThread, ServeProcess, ServerProcess, ThreadedServer


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every process it starts) keeps socketeer's state in a directory of its
    own: generated certificates and known_hosts never reach the user's home.
    """
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _data_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started by a test keep their state (chat history) in a directory of its own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))


@pytest.fixture
def serve_in_thread() -> Iterator[ServeInThread]:
    """Factory: ``serve_in_thread("greet", ["127.0.0.1:0"], **config) -> (server, endpoints)``."""
    started: list[ThreadedServer] = []

    def start(
        service: str | Service, endpoints: list[str] | None = None, **config: object
    ) -> tuple[ThreadedServer, list[Endpoint]]:
        chosen = make_service(service) if isinstance(service, str) else service
        threaded = ThreadedServer(
            chosen,
            endpoints or ["127.0.0.1:0"],
            ServerConfig(**config),  # type: ignore[arg-type]
        )
        started.append(threaded)
        return threaded, threaded.start()

    yield start
    for threaded in started:
        threaded.stop()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[ServeProcess]:
    """Factory: ``serve_process("serve", "greet", "127.0.0.1:0", count=1) -> ServerProcess``."""
    started: list[ServerProcess] = []

    def start(*args: str, count: int = 1) -> ServerProcess:
        process = ServerProcess(list(args), tmp_path / f"stderr-{len(started)}.log")
        started.append(process)
        process.wait_listening(count)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def serve_share(tmp_path: Path) -> Iterator[ServeShare]:
    """Factory: a files server sharing ``root`` (default ``tmp_path/share``), writable."""
    started: list[Share] = []

    def start(
        root: Path | None = None,
        *,
        allow_upload: bool = True,
        token: str | None = TOKEN,
        endpoint: str = "127.0.0.1:0",
    ) -> Share:
        root = root or tmp_path / "share"
        root.mkdir(exist_ok=True)
        service = FilesService(root, allow_upload=allow_upload, token=token, partial_ttl=0)
        # No idle sweep and no partial expiry: "settled" then means no task at all is
        # left on the loop.
        threaded = ThreadedServer(service, [endpoint], ServerConfig(idle_timeout=None))
        assert isinstance(threaded.loop, asyncio.BaseEventLoop), "asyncio's own loop (sendfile)"
        (bound,) = threaded.start()
        started.append(Share(root, bound, threaded, service))
        return started[-1]

    yield start
    for share in started:
        share.stop()


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test does to it, the server never logs an error (a traceback, a lost task).

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("no_errors_logged")``.
    """
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(r.getMessage() for r in errors)


@pytest.fixture
def share(serve_share: ServeShare) -> Share:
    return serve_share()
