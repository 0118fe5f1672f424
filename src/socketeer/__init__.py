"""socketeer: socket servers and clients that work, concurrently, fast and safely.

The layers, from the bottom up: :mod:`~socketeer.endpoint` and
:mod:`~socketeer.framing` (sans-IO), :mod:`~socketeer.service` and
:mod:`~socketeer.services` (sans-IO protocol logic), :mod:`~socketeer.server`
and :mod:`~socketeer.client` (asyncio and blocking I/O).
"""

from .client import AsyncConnection, Connection
from .endpoint import Endpoint, parse_endpoint
from .errors import (
    BindError,
    ConnectError,
    ConnectionClosed,
    EndpointError,
    FrameTooLarge,
    LocalProtocolError,
    NetworkError,
    ProtocolError,
    RemoteProtocolError,
    SocketeerError,
    Timeout,
)
from .framing import AutoCodec, Codec, LengthPrefixCodec, LineCodec, RawCodec, make_codec
from .server import Server, ServerConfig, serve
from .service import Handler, Service

__version__ = "0.1.0"

__all__ = [
    "AsyncConnection",
    "AutoCodec",
    "BindError",
    "Codec",
    "ConnectError",
    "Connection",
    "ConnectionClosed",
    "Endpoint",
    "EndpointError",
    "FrameTooLarge",
    "Handler",
    "LengthPrefixCodec",
    "LineCodec",
    "LocalProtocolError",
    "NetworkError",
    "ProtocolError",
    "RawCodec",
    "RemoteProtocolError",
    "Server",
    "ServerConfig",
    "Service",
    "SocketeerError",
    "Timeout",
    "__version__",
    "make_codec",
    "parse_endpoint",
    "serve",
]
