"""Small files one by one: no request waits for a delayed ACK (Nagle's algorithm)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

from shares import TOKEN
from socketeer.services.files.client import FilesClient
from support import WAIT, ServeProcess

FILES, SIZE = 200, 1024
#: A delayed ACK is 40 ms on Linux: a request that waits for one takes at least that.
STALL = 0.040
#: Times a request that took that long is timed again (on a shared machine a busy moment
#: can last a while; a request that waits for a delayed ACK waits every time).
TRIES = 5


def _stalled(requests: list[Callable[[], object]]) -> list[float]:
    """How long the requests that took a stall's time took, each timed up to :data:`TRIES` times.

    A request that waits for a delayed ACK does so every time; one that a busy
    machine happened to delay is fast another time, and not counted.
    """
    slow = []
    for request in requests:
        taken = []
        for _ in range(TRIES):
            started = time.perf_counter()
            request()
            taken.append(time.perf_counter() - started)
            if taken[-1] < STALL:
                break
        else:
            slow.append(min(taken))
    return slow


def test_two_hundred_small_files_each_way_without_a_delayed_ack_stall(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    share, local = tmp_path / "share", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    (share / "up").mkdir()
    names = [f"f{i:03}" for i in range(FILES)]
    for name in names:
        (share / name).write_bytes(os.urandom(SIZE))
    server = serve_process(
        "serve", "files", str(share), "127.0.0.1:0", "--allow-upload", "--token", TOKEN
    )
    with FilesClient.connect(server.endpoints[0], token=TOKEN, timeout=WAIT) as client:
        get, put = client.download, client.upload
        slow_gets = _stalled(
            [functools.partial(get, name, local / name, force=True) for name in names]
        )
        slow_puts = _stalled(
            [functools.partial(put, local / name, f"up/{name}", force=True) for name in names]
        )
    assert (share / "up" / names[-1]).read_bytes() == (share / names[-1]).read_bytes()
    assert not slow_gets, f"{len(slow_gets)} downloads took {max(slow_gets) * 1000:.1f} ms"
    assert not slow_puts, f"{len(slow_puts)} uploads took {max(slow_puts) * 1000:.1f} ms"
