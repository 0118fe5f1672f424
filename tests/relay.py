"""A TCP relay that hangs in the middle of a transfer, for tests of broken-off transfers."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from support import WAIT


class StallingRelay:
    """A TCP relay to ``target`` that stops passing bytes one way after ``limit`` of them.

    It stands for a network that hangs in the middle of a transfer, so that
    a command can be interrupted, or its server killed, at a known point.
    :meth:`release` lets the held bytes go on; when one side breaks off,
    the relay resets the other, as a broken network path would.  It relays
    one connection.
    """

    def __init__(self, target: str, limit: int, *, upload: bool) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._limit = limit
        self._upload = upload
        self._released = threading.Event()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets = [self._listener]
        self._pair: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        server = socket.create_connection(self._target, WAIT)
        self._pair = [client, server]
        self._sockets += self._pair
        for source, sink, limited in (
            (client, server, self._upload),
            (server, client, not self._upload),
        ):
            source.settimeout(WAIT)
            pump = threading.Thread(target=self._pump, args=(source, sink, limited), daemon=True)
            pump.start()
            self._threads.append(pump)

    def _pump(self, source: socket.socket, sink: socket.socket, limited: bool) -> None:
        budget = self._limit if limited else None
        try:
            while True:
                if budget == 0:
                    self._released.wait(WAIT)
                    if self._closed or not self._released.is_set():
                        return
                    budget = None
                data = source.recv(65536 if budget is None else min(65536, budget))
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
                if budget is not None:
                    budget -= len(data)
        except OSError:
            if not self._closed:
                self._reset()

    def _reset(self) -> None:
        """Break both connections off with a reset."""
        for sock in self._pair:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes the other pump
            sock.close()

    def release(self) -> None:
        """The network recovers: held bytes go on."""
        self._released.set()

    def close(self) -> None:
        self._closed = True
        self._released.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv or accept
            sock.close()
        for thread in self._threads:
            thread.join(WAIT)
