"""A blocking WebSocket client for tests: wsproto over a plain socket."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from support import WAIT


class Rejected(Exception):
    """The server answered the upgrade with ``status``."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused: {status} {body!r}")
        self.status = status
        self.body = body


class WsClient:
    """One WebSocket to ``host:port`` ``path``: text messages in and out, close codes seen."""

    def __init__(
        self, host: str, port: int, path: str = "/ws", headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.sock = socket.create_connection((host, port), WAIT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: list[str] = []
        self.pongs: list[bytes] = []
        #: The code of the server's close frame, once it came.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.eof = False
        self._text: list[str] = []
        extra = [(k.encode(), v.encode()) for k, v in headers or []]
        request = Request(host=f"{host}:{port}", target=path, extra_headers=extra)
        self.sock.sendall(self.ws.send(request))
        status: int | None = None
        body = b""
        deadline = time.monotonic() + WAIT
        while status is None or (status != 101 and not self.eof):
            for event in self._read(deadline):
                if isinstance(event, AcceptConnection):
                    status = 101
                elif isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        self.eof = True
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        self.eof = True
                else:
                    self._take(event)
            if status == 101:
                break
        if status != 101:
            self.sock.close()
            raise Rejected(status or 0, body)

    # sending ----------------------------------------------------------------------

    def send(self, text: str) -> None:
        self.sock.sendall(self.ws.send(Message(data=text)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ping(self, payload: bytes = b"") -> None:
        self.sock.sendall(self.ws.send(Ping(payload=payload)))

    def close(self, code: int = 1000) -> None:
        self.sock.sendall(self.ws.send(CloseConnection(code=code)))

    # receiving --------------------------------------------------------------------

    def _read(self, deadline: float) -> list[Event]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for the server")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                raise AssertionError("timed out waiting for the server") from None
            data = b""
        if not data:
            self.eof = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        return list(self.ws.events())

    def _take(self, event: Event) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self.messages.append("".join(self._text))
                self._text.clear()
        elif isinstance(event, BytesMessage):
            raise AssertionError("the server sent a binary message")
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection) and self.close_code is None:
            self.close_code, self.close_reason = event.code, event.reason

    def pump(self, deadline: float) -> None:
        """Read once (until ``deadline``) and keep what came."""
        for event in self._read(deadline):
            self._take(event)

    def expect(self, fragment: str) -> list[str]:
        """Messages up to the first that holds ``fragment`` (they are taken)."""
        deadline = time.monotonic() + WAIT
        while True:
            for index, message in enumerate(self.messages):
                if fragment in message:
                    taken = self.messages[: index + 1]
                    del self.messages[: index + 1]
                    return taken
            if self.eof:
                raise AssertionError(f"closed before {fragment!r}; saw {self.messages}")
            self.pump(deadline)

    def expect_json(self, **fields: Any) -> dict[str, Any]:
        """The first JSON message whose fields include ``fields`` (earlier ones are taken)."""
        deadline = time.monotonic() + WAIT
        while True:
            while self.messages:
                message = self.messages.pop(0)
                if message.startswith("{"):
                    event = json.loads(message)
                    if all(event.get(k) == v for k, v in fields.items()):
                        return dict(event)
            if self.eof:
                raise AssertionError(f"closed before a message with {fields}")
            self.pump(deadline)

    def wait_closed(self) -> int | None:
        """Read until the server closes; the code of its close frame (None: there was none)."""
        deadline = time.monotonic() + WAIT
        while not self.eof:
            self.pump(deadline)
        return self.close_code

    def shut(self) -> None:
        self.sock.close()
