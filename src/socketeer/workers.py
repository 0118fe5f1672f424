"""Several server processes sharing one port, to use every core.

The parent resolves each TCP/UDP endpoint to a concrete port (so port 0
works) by binding a reservation socket with SO_REUSEPORT, then forks N
workers that each bind their own SO_REUSEPORT socket on that port: the
kernel spreads new connections across them.  Unix sockets cannot share a
path that way, so the parent listens once and the workers inherit the
socket.  SIGINT/SIGTERM on the parent is passed on to every worker, which
shuts down gracefully; a second one cuts the grace period short.  SIGHUP
is passed on too when there are access lists to reload.  On Linux a worker
also ends (as for SIGTERM) when the parent is killed outright (SIGKILL):
see :mod:`.parent_death`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.queues
import os
import queue
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType

from . import loop
from .binding import BoundSocket, bind_endpoint, remove_unix_socket
from .endpoint import Endpoint
from .errors import BindError, SocketeerError
from .logs import mark_worker
from .parent_death import end_with_parent
from .quantity import quantity
from .server import Server, ServerConfig, serve
from .service import Service

__all__ = ["run_workers"]

log = logging.getLogger("socketeer.server")

_READY_TIMEOUT = 30.0


def run_workers(
    service: Service,
    endpoints: Sequence[Endpoint],
    config: ServerConfig,
    count: int,
    on_ready: Callable[[list[Endpoint]], None],
    use_uvloop: bool = True,
) -> int:
    """Serve with ``count`` processes until a signal; return the exit code (0 on a clean stop)."""
    reservations: list[BoundSocket] = []
    inherited: list[BoundSocket] = []
    concrete: list[Endpoint] = []
    try:
        for endpoint in endpoints:
            if endpoint.transport == "unix":
                inherited += bind_endpoint(endpoint)
            else:
                reserved = bind_endpoint(endpoint, reuse_port=True, listen=False)
                reservations += reserved
                concrete.append(endpoint.with_port(reserved[0].actual.port))
        ctx = multiprocessing.get_context("fork")
        ready: multiprocessing.queues.Queue[tuple[str, str]] = ctx.Queue()
        parent = os.getpid()
        worker_config = replace(config, reuse_port=True)
        processes = [
            ctx.Process(
                target=_worker_main,
                args=(n, service, concrete, worker_config, inherited, ready, use_uvloop, parent),
                name=f"worker {n}",
            )
            for n in range(1, count + 1)
        ]
        for process in processes:
            process.start()
        try:
            _await_workers(ready, count)
        except BaseException:
            _signal_all(processes, signal.SIGTERM)
            for process in processes:
                process.join(_READY_TIMEOUT)
            raise
        for bound in reservations:
            bound.sock.close()
        on_ready([b.actual for b in reservations + inherited])
        return _supervise(processes, reload=config.access.reloadable)
    finally:
        for bound in reservations + inherited:
            remove_unix_socket(bound)
            bound.sock.close()


def _worker_main(
    number: int,
    service: Service,
    endpoints: list[Endpoint],
    config: ServerConfig,
    inherited: list[BoundSocket],
    ready: multiprocessing.queues.Queue[tuple[str, str]],
    use_uvloop: bool,
    parent: int,
) -> None:
    end_with_parent(parent)
    # The parent relays the terminal's Ctrl-C as SIGTERM; ignoring SIGINT here
    # keeps one keypress from counting twice.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark_worker(number)
    server = Server(service, endpoints, config, inherited=inherited)
    try:
        loop.run(
            serve(server, on_ready=lambda _: ready.put(("ready", "")), signals=(signal.SIGTERM,)),
            use_uvloop=use_uvloop,
        )
    except SocketeerError as exc:
        ready.put(("error", str(exc)))
        os._exit(1)
    except Exception as exc:  # reported by the parent in one line, like any failure
        log.debug("worker failed", exc_info=True)
        ready.put(("error", f"worker failed: {type(exc).__name__}: {exc}"))
        os._exit(1)


def _await_workers(ready: multiprocessing.queues.Queue[tuple[str, str]], count: int) -> None:
    for _ in range(count):
        try:
            status, message = ready.get(timeout=_READY_TIMEOUT)
        except queue.Empty:
            raise BindError(
                f"workers did not start within {quantity(_READY_TIMEOUT, 'second')}"
            ) from None
        if status == "error":
            raise BindError(message)


def _signal_all(processes: Sequence[multiprocessing.process.BaseProcess], signum: int) -> None:
    for process in processes:
        if process.pid is not None and process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)


def _supervise(processes: Sequence[multiprocessing.process.BaseProcess], *, reload: bool) -> int:
    """Wait for the workers; pass stop signals on (and SIGHUP, when it reloads access lists)."""

    def relay(signum: int, frame: FrameType | None) -> None:
        _signal_all(processes, signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    relayed = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if reload else ()))
    previous = {s: signal.signal(s, relay) for s in relayed}
    try:
        for process in processes:
            process.join()
            if process.exitcode:
                log.warning("%s exited with code %s", process.name, process.exitcode)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(p.exitcode == 0 for p in processes) else 1
