"""TCP relays: one that hangs in the middle of a transfer, one that delays every byte."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from typing import Any

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


class DelayingRelay:
    """A TCP relay to ``target`` that delivers every byte ``delay`` seconds after it arrived.

    It stands for a network with a round trip of ``2 * delay``: a client that
    waits for each reply before the next request pays that per request, one
    that keeps requests in flight does not.  It relays connections one after
    another until closed.
    """

    def __init__(self, target: str, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._delay = delay
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets = [self._listener]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target, WAIT)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                source.settimeout(None)
                on_the_way: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
                for work in (self._receive, self._deliver):
                    thread = threading.Thread(
                        target=work, args=(source, sink, on_the_way), daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)

    def _receive(
        self, source: socket.socket, _: socket.socket, on_the_way: queue.SimpleQueue[Any]
    ) -> None:
        try:
            while data := source.recv(65536):
                on_the_way.put((time.monotonic() + self._delay, data))
        except OSError:
            pass
        on_the_way.put((time.monotonic() + self._delay, b""))

    def _deliver(
        self, _: socket.socket, sink: socket.socket, on_the_way: queue.SimpleQueue[Any]
    ) -> None:
        try:
            while True:
                due, data = on_the_way.get(timeout=WAIT * 10)
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the network's latency, bounded by ``delay``
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except (OSError, queue.Empty):
            return

    def close(self) -> None:
        self._closed = True
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(WAIT)
