"""socketeer: socket servers and clients that work, concurrently, fast and safely.

The layers, from the bottom up: :mod:`~socketeer.endpoint` and
:mod:`~socketeer.framing` (sans-IO), :mod:`~socketeer.service` and
:mod:`~socketeer.services` (sans-IO protocol logic), :mod:`~socketeer.server`
and :mod:`~socketeer.client` (asyncio and blocking I/O).
Exports are imported on first use, so ``import socketeer.framing`` loads no
event loop.
"""

from typing import TYPE_CHECKING

from .exports import lazy_exports

if TYPE_CHECKING:
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
    from .logs import announce, log_to_stderr
    from .server import Server, ServerConfig, serve
    from .service import Handler, Service
    from .tasks import MessageStream, TaskService, task_service

_EXPORTS = {
    **dict.fromkeys(["AsyncConnection", "Connection"], ".client"),
    **dict.fromkeys(["Endpoint", "parse_endpoint"], ".endpoint"),
    **dict.fromkeys(
        [
            "BindError",
            "ConnectError",
            "ConnectionClosed",
            "EndpointError",
            "FrameTooLarge",
            "LocalProtocolError",
            "NetworkError",
            "ProtocolError",
            "RemoteProtocolError",
            "SocketeerError",
            "Timeout",
        ],
        ".errors",
    ),
    **dict.fromkeys(
        ["AutoCodec", "Codec", "LengthPrefixCodec", "LineCodec", "RawCodec", "make_codec"],
        ".framing",
    ),
    **dict.fromkeys(["announce", "log_to_stderr"], ".logs"),
    **dict.fromkeys(["Server", "ServerConfig", "serve"], ".server"),
    **dict.fromkeys(["Handler", "Service"], ".service"),
    **dict.fromkeys(["MessageStream", "TaskService", "task_service"], ".tasks"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

#: The version of socketeer (the package metadata and ``socketeer --version`` read it here).
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
    "MessageStream",
    "NetworkError",
    "ProtocolError",
    "RawCodec",
    "RemoteProtocolError",
    "Server",
    "ServerConfig",
    "Service",
    "SocketeerError",
    "TaskService",
    "Timeout",
    "__version__",
    "announce",
    "log_to_stderr",
    "make_codec",
    "parse_endpoint",
    "serve",
    "task_service",
]
