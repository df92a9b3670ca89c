"""``serve --workers N``: uvicorn's worker supervisor, each worker on its own socket.

uvicorn binds one socket in the parent and shares it; each worker's event loop
accepts every connection pending when it wakes, so the clients that connect at
once (a pool opening its connections) all land on one worker and the others sit
idle. On Linux each worker binds the address itself with ``SO_REUSEPORT``
instead, and the kernel spreads new connections over the workers. The parent
binds it once first, plainly: a port in use (another server's, with or without
``SO_REUSEPORT``) fails at once instead of being shared, and port 0 becomes one
port for every worker. uvicorn's supervisor is otherwise unchanged: health
checks, restarts, signals.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

REUSE_PORT = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


class ReusePortListener:
    """Stands for the listening socket in the supervisor: a worker that unpickles it
    gets a socket of its own bound to ``address`` with ``SO_REUSEPORT``."""

    def __init__(self, family: int, address: tuple[Any, ...]) -> None:
        self.family, self.address = family, address

    def __reduce__(self) -> tuple[Any, tuple[int, tuple[Any, ...]]]:
        return _bound, (self.family, self.address)


def _bound(family: int, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)  # listened on by the worker's server, with its backlog
    return sock


def run_workers(config: uvicorn.Config) -> None:
    """``config.workers`` processes under uvicorn's supervisor, until it stops."""
    if not REUSE_PORT or config.uds is not None or config.fd is not None:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    address = _free(family, (config.host, config.port))
    uvicorn.config.logger.info(
        "Uvicorn running on http://%s:%d in %d workers, each on its own socket",
        config.host,
        address[1],
        config.workers,
    )
    listener: Any = ReusePortListener(family, address)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: the workers have stopped
        Multiprocess(config, sockets=[listener]).run()


def _free(family: int, address: tuple[Any, ...]) -> tuple[Any, ...]:
    """``address`` with its port, once a plain bind there succeeds; else exit as uvicorn
    does when its own bind fails."""
    probe = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        return tuple(probe.getsockname())
    except OSError as error:
        uvicorn.config.logger.error(error)
        sys.exit(STARTUP_FAILURE)
    finally:
        probe.close()
