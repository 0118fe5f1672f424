"""A files server in a thread that answers one client as a test scripts it (not socketeer's)."""

from __future__ import annotations

import contextlib
import socket
import threading

from socketeer.errors import ProtocolError
from socketeer.services.files.connection import NEED_DATA, SERVER, FilesConnection
from socketeer.services.files.messages import Message
from support import WAIT


class ScriptedFilesServer:
    """Serves one connection on 127.0.0.1: each request is answered with :meth:`answer`.

    Keeps the requests in order; hangs up when :meth:`answer` gives None, when the
    client closes, or when the client breaks the protocol.
    """

    def __init__(self) -> None:
        self.requests: list[Message] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def answer(self, conn: FilesConnection, request: Message) -> bytes | None:
        """The bytes that answer ``request`` (None: hang up)."""
        raise NotImplementedError

    def _serve(self) -> None:
        with self._listener, self._listener.accept()[0] as sock, contextlib.suppress(OSError):
            sock.settimeout(WAIT)
            conn = FilesConnection(SERVER)
            while True:
                try:
                    event = conn.next_event()
                except ProtocolError:
                    return
                if event is NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                    continue
                if not isinstance(event, Message):
                    return
                self.requests.append(event)
                reply = self.answer(conn, event)
                if reply is None:
                    return
                sock.sendall(reply)

    def join(self) -> None:
        """Wait (bounded) until the connection is over."""
        self._thread.join(WAIT)
