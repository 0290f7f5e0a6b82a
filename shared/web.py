"""Serve a WSGI app on loopback from a background thread, and stop it cleanly."""

from __future__ import annotations

import errno
import logging
import socket
import threading

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from shared.net import PortInUse, free_port

# PortInUse and free_port live in shared.net; older imports still find them here.
__all__ = ["BackgroundServer", "InFlight", "PortInUse", "QuietRequestHandler", "free_port"]

log = logging.getLogger("shared.web")


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request log line on stderr.

    In a notebook those lines would land in whichever cell runs next.
    Pass ``on_request(method, path, status)`` to see requests your own way.
    """

    on_request = None

    def run_wsgi(self) -> None:
        """Serve one request, counted as in flight until its answer is written."""
        counter = getattr(self.server, "in_flight", None)
        if counter is None:
            return super().run_wsgi()
        with counter:
            return super().run_wsgi()

    def log_request(self, code="-", size="-") -> None:
        callback = type(self).on_request
        if callback is not None:
            callback(self.command, self.path, code)

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002
        if type == "error":
            log.error(message, *args)


class InFlight:
    """How many requests a server is answering right now; wait for none."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc_info) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    @property
    def count(self) -> int:
        with self._idle:
            return self._count

    def wait_idle(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for no request in flight; return how many are left."""
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout)
            return self._count


class BackgroundServer:
    """A real WSGI server (werkzeug) on 127.0.0.1, serving from a thread.

    ``threaded=False`` answers one request at a time, in arrival order, so a
    slow request makes every later one wait (head-of-line blocking).
    ``threaded=True`` starts a thread per request.
    """

    def __init__(self, app, *, threaded: bool = True, host: str = "127.0.0.1",
                 port: int = 0, on_request=None) -> None:
        self.app, self.threaded, self.host, self._asked_port = app, threaded, host, port
        self._handler = type("Handler", (QuietRequestHandler,),
                             {"on_request": staticmethod(on_request) if on_request else None})
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.in_flight = InFlight()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running: call start() first")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> BackgroundServer:
        """Listen, then serve from a daemon thread until stop()."""
        if self._server is None:
            self._server = self._make_server()
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                name=f"wsgi-{self._server.port}", daemon=True)
            self._thread.start()
        return self

    def listen(self) -> BackgroundServer:
        """Listen without a thread; then serve_forever() serves in the caller."""
        if self._server is None:
            self._server = self._make_server()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (for the command line)."""
        if self._server is None:
            self._server = self._make_server()
        self._server.serve_forever(poll_interval=0.1)

    def _make_server(self) -> BaseWSGIServer:
        # Bind ourselves: werkzeug prints to stderr and calls sys.exit(1)
        # when a port is taken, which would kill a notebook's kernel.
        sock = _listen(self.host, self._asked_port)
        try:
            server = make_server(self.host, sock.getsockname()[1], self.app,
                                 threaded=self.threaded, request_handler=self._handler,
                                 fd=sock.fileno())
        finally:
            sock.close()  # the server holds its own duplicate of the socket
        # Werkzeug's server has no slot for it; QuietRequestHandler reads it back.
        server.in_flight = self.in_flight  # type: ignore[attr-defined]
        return server

    def stop(self, drain: float = 10.0) -> int:
        """Stop accepting, then wait up to ``drain`` s for requests in flight.

        Returns how many requests were still being answered at the deadline
        (0 after a clean stop).
        """
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return 0
        if thread is not None:
            server.shutdown()
            thread.join(timeout=10)
        server.server_close()  # no new connections from here on
        return self.in_flight.wait_idle(drain)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = "threaded" if self.threaded else "single-threaded"
        where = self.url if self.running else "stopped"
        return f"<BackgroundServer {kind} {where}>"


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise
    return sock
