"""Fixtures: socketeer servers in a background thread or as a real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from socketeer import Endpoint, ServerConfig
from socketeer.service import Service
from socketeer.services import make_service
from support import ServeInThread, ServeProcess, ServerProcess, ThreadedServer


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
