"""Small files one by one: no request waits for a delayed ACK (Nagle's algorithm)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shares import TOKEN
from socketeer.services.files.client import FilesClient
from support import WAIT, ServeProcess

FILES, SIZE = 200, 1024
#: A delayed ACK is 40 ms on Linux: a request that waits for one takes at least that.
STALL = 0.040


def test_two_hundred_small_files_each_way_without_a_delayed_ack_stall(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    share, local = tmp_path / "share", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    for i in range(FILES):
        (share / f"f{i:03}").write_bytes(os.urandom(SIZE))
    server = serve_process(
        "serve", "files", str(share), "127.0.0.1:0", "--allow-upload", "--token", TOKEN
    )
    slowest: dict[str, float] = {"get": 0.0, "put": 0.0}
    with FilesClient.connect(server.endpoints[0], token=TOKEN, timeout=WAIT) as client:
        for i in range(FILES):
            started = time.perf_counter()
            client.download(f"f{i:03}", local / f"f{i:03}", force=True)
            slowest["get"] = max(slowest["get"], time.perf_counter() - started)
        for i in range(FILES):
            started = time.perf_counter()
            client.upload(local / f"f{i:03}", f"up/f{i:03}", force=True, parents=i == 0)
            slowest["put"] = max(slowest["put"], time.perf_counter() - started)
    assert (share / "up" / "f199").read_bytes() == (share / "f199").read_bytes()
    assert slowest["get"] < STALL, f"a download took {slowest['get'] * 1000:.1f} ms"
    assert slowest["put"] < STALL, f"an upload took {slowest['put'] * 1000:.1f} ms"
