"""The files server for ``benchmarks/files.py``: socketeer's files service on 127.0.0.1.

    python benchmarks/files_server.py DIR --token TOKEN

Shares ``DIR`` with uploads allowed (they need ``TOKEN``), on 127.0.0.1 port
0, on asyncio's own event loop (so downloads use zero-copy ``os.sendfile``).
Prints ``listening on 127.0.0.1:PORT`` (flushed) once it accepts, logs
warnings and errors only, and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from socketeer import loop
from socketeer.endpoint import Endpoint, parse_endpoint
from socketeer.server import Server, serve
from socketeer.services.files import FilesService


def announce(endpoints: list[Endpoint]) -> None:
    for endpoint in endpoints:
        print(f"listening on {endpoint}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", type=Path, help="the directory to share")
    parser.add_argument("--token", required=True, help="the write token uploads need")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    service = FilesService(args.root, allow_upload=True, token=args.token)
    server = Server(service, [parse_endpoint("127.0.0.1:0")])
    loop.run(serve(server, on_ready=announce), use_uvloop=False)


if __name__ == "__main__":
    main()
