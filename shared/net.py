"""Ports on loopback: one the OS picks, one held closed, and the error for a taken one."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PortInUse", "closed_port", "free_port"]


class PortInUse(OSError):
    """The port someone asked for is taken; the message names the fix."""

    def __init__(self, host: str, port: int, what: str = "the web app") -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"Port {port} on {host} is already in use, so {what} cannot listen there. "
            f"Stop whatever holds it (another `make serve`?) or choose another port, "
            f"e.g. `make serve PORT={port + 1}`.")
        self.host, self.port = host, port


def free_port(host: str = "127.0.0.1") -> int:
    """A port that nothing listens on right now (the OS picks it).

    Someone else may take it a moment later: to bind a server, prefer port 0
    and read back the port it got. For a port that must *stay* closed (a
    "server is down" test), use :func:`closed_port`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port held bound but not listening: a connection to it is refused, and no
    other process can take it until the ``with`` block ends."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield sock.getsockname()[1]
