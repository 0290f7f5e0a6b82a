"""A real RabbitMQ server for the lessons: ``RABBITMQ_URL`` if set, else Debian's
``rabbitmq-server`` started in a private folder, else a clear reason why not.

:class:`RabbitServer` starts one node of its own: a unique node name, free
loopback ports (AMQP, Erlang distribution, and a private ``epmd`` name
server), and every file (database, logs, Erlang cookie) in a temporary
folder, with no plugin (no management UI). It runs the node's own start
script (``/usr/lib/rabbitmq/bin/rabbitmq-server``), not Debian's wrapper in
``/usr/sbin``, which switches to the ``rabbitmq`` user and uses the system's
folders: so it runs as whoever you are. It needs several seconds to boot (4-15 s
measured here), so a lesson starts it early and in the background
(:func:`start_in_background`), at a low CPU priority (``nice``).

Erlang normally starts ``epmd -daemon``, which detaches and outlives the node.
Here ``epmd`` runs in the foreground as a child of ours, on its own port, and
is stopped after the node: nothing is left behind (:meth:`RabbitServer.leftovers`).
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from shared.net import free_port
from shared.processes import LoggedChild, alive

__all__ = ["BackgroundRabbit", "RabbitServer", "RabbitUnavailable", "rabbitmq_problem",
           "server_script", "start_in_background"]

ENV_VAR = "RABBITMQ_URL"
INSTALL_HINT = ("set RABBITMQ_URL, or install Debian's rabbitmq-server "
                "(sudo apt-get install rabbitmq-server)")
SCRIPT_PLACES = ("/usr/sbin/rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
BOOT_SECONDS = 120.0  # 4-15 s measured here; a busy CI machine can take several times that
STOP_SECONDS = 10.0  # a graceful stop takes a second or few


class RabbitUnavailable(RuntimeError):
    """No RabbitMQ could be found or started; the message says why and how to get one."""


def server_script() -> Path | None:
    """The node's own start script (``.../rabbitmq/bin/rabbitmq-server``), or None.

    Debian's ``/usr/sbin/rabbitmq-server`` is a link to a wrapper that switches
    to the ``rabbitmq`` user; the real script sits next to the wrapper.
    """
    for candidate in (shutil.which("rabbitmq-server"), *SCRIPT_PLACES):
        if candidate is None:
            continue
        script = Path(candidate).resolve().parent / "rabbitmq-server"
        if script.is_file() and os.access(script, os.X_OK):
            return script
    return None


def epmd_binary() -> Path | None:
    """Erlang's port mapper daemon: on PATH, or next to the Erlang runtime."""
    found = shutil.which("epmd")
    if found is not None:
        return Path(found)
    for erts in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"), reverse=True):
        return erts
    return None


def rabbitmq_problem() -> str | None:
    """Why no RabbitMQ can be had here, without starting one; None if one may be.

    Cheap: it only looks at ``RABBITMQ_URL`` and for the binaries.
    """
    if os.environ.get(ENV_VAR):
        return None
    if server_script() is None or epmd_binary() is None:
        return f"no RabbitMQ here: {INSTALL_HINT}"
    return None


def url_problem(url: str, timeout: float = 2.0) -> str | None:
    """Why the RabbitMQ at ``url`` does not accept an AMQP connection, or None if it does."""
    pika = importlib.import_module("pika")  # only when RabbitMQ is asked for

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = timeout
    parameters.connection_attempts, parameters.retry_delay = 1, 0
    try:
        pika.BlockingConnection(parameters).close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


@dataclass(frozen=True)
class Ports:
    """The loopback ports one node listens on."""

    amqp: int
    dist: int
    epmd: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


class RabbitServer:
    """One RabbitMQ node of ours, on loopback, in a temporary folder removed by :meth:`stop`."""

    def __init__(self) -> None:
        self.node = f"defer-{uuid.uuid4().hex[:12]}@localhost"
        self.ports = Ports.free()
        self.folder: Path | None = None
        self._epmd: LoggedChild | None = None
        self._node: LoggedChild | None = None
        self._tree: list[psutil.Process] = []
        self._stopping = threading.Event()  # set by stop(): a boot under way gives up

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports.amqp}/%2F"

    @property
    def running(self) -> bool:
        return self._node is not None and self._node.running

    def start(self, timeout: float = BOOT_SECONDS) -> RabbitServer:
        """Start ``epmd`` then the node; return once it accepts AMQP connections.

        :class:`RabbitUnavailable` if it is not installed or does not come up
        (with the end of its log); nothing is left running then.
        """
        script, epmd = server_script(), epmd_binary()
        if script is None or epmd is None:
            raise RabbitUnavailable(f"no RabbitMQ here: {INSTALL_HINT}")
        self.folder = Path(tempfile.mkdtemp(prefix="defer-rabbitmq-"))
        atexit.register(self.stop)
        try:
            self._epmd = LoggedChild([str(epmd), "-port", str(self.ports.epmd),
                                      "-address", "127.0.0.1"],
                                     name="epmd", folder=self.folder, env=self._env())
            self._epmd.wait_until(lambda: _listening(self.ports.epmd), 10, "epmd to listen")
            self._node = LoggedChild([*_low_priority(), str(script)], name="rabbitmq",
                                     folder=self.folder, env=self._env(), cwd=self.folder)
            if self._stopping.is_set():  # stop() ran meanwhile, perhaps before the node existed
                raise RuntimeError("it was stopped while it booted")
            self._node.wait_until(self._ready, timeout, f"RabbitMQ to accept connections "
                                  f"on 127.0.0.1:{self.ports.amqp}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RabbitUnavailable(f"RabbitMQ did not start: {exc}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        """The AMQP port listens (RabbitMQ opens it last) and a client can log in."""
        if self._stopping.is_set():
            raise RuntimeError("it was stopped while it booted")
        return _listening(self.ports.amqp) and url_problem(self.url) is None

    def _env(self) -> dict[str, str]:
        assert self.folder is not None
        folder, ports = self.folder, self.ports
        (folder / "enabled_plugins").write_text("[].\n")  # no management plugin
        return {
            **os.environ,
            "HOME": str(folder),  # the Erlang cookie goes here
            "ERL_EPMD_PORT": str(ports.epmd), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(ports.amqp),
            "RABBITMQ_DIST_PORT": str(ports.dist),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            # ignore the system's configuration: this node is the course's alone
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
        }

    def processes(self) -> list[psutil.Process]:
        """The running processes of this server: ``epmd``, the start script and what it started."""
        found = []
        for child in (self._epmd, self._node):
            if child is None:
                continue
            try:
                root = psutil.Process(child.pid)
                found += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return [p for p in found if alive(p)]

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop the node (SIGTERM: a graceful stop), then ``epmd``; remove the folder.

        Safe to call twice. What the node started is remembered first, so
        :meth:`leftovers` can check it all went.
        """
        self._stopping.set()
        atexit.unregister(self.stop)
        self._tree += self.processes()
        if self._node is not None:
            self._node.stop(timeout)
        if self._epmd is not None:
            self._epmd.stop(timeout)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def leftovers(self) -> list[psutil.Process]:
        """Processes of this server still running: any at all after :meth:`stop` is a bug."""
        return [p for p in {*self._tree, *self.processes()} if alive(p)]

    def __enter__(self) -> RabbitServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RabbitServer {self.node} {'running' if self.running else 'stopped'}>"


class BackgroundRabbit:
    """A RabbitMQ being found or started in a thread: :meth:`wait` gives its URL.

    ``RABBITMQ_URL`` when set (checked), else a node of our own
    (:class:`RabbitServer`), else :class:`RabbitUnavailable` from :meth:`wait`.
    """

    def __init__(self, timeout: float = BOOT_SECONDS) -> None:
        self.server: RabbitServer | None = None
        #: how long the node took to accept connections, when it is ours
        self.boot_seconds: float | None = None
        self._url: str | None = None
        self._problem: str | None = None
        self._timeout = timeout
        self._booting: RabbitServer | None = None  # the node being booted, until it is up
        self._thread = threading.Thread(target=self._find, name="rabbitmq-boot", daemon=True)
        self._thread.start()

    def _find(self) -> None:
        try:
            env_url = os.environ.get(ENV_VAR)
            if env_url:
                if (problem := url_problem(env_url)) is not None:
                    raise RabbitUnavailable(f"{ENV_VAR} does not answer ({problem}): start that "
                                            f"server, fix {ENV_VAR}, or unset it to let the "
                                            f"course start its own")
                self._url = env_url
                return
            server, started = RabbitServer(), time.perf_counter()  # it stops itself if it cannot start
            self._booting = server
            self._url = server.start(self._timeout).url
            self.boot_seconds = time.perf_counter() - started
            self.server = server
        except Exception as exc:  # noqa: BLE001 - reported by wait(), in the caller's thread
            self._problem = str(exc) or type(exc).__name__

    def wait(self, timeout: float = BOOT_SECONDS) -> str:
        """The URL, once the server accepts connections; :class:`RabbitUnavailable` if none."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RabbitUnavailable(f"RabbitMQ was not ready after waiting {timeout:g} s more")
        if self._url is None:
            raise RabbitUnavailable(self._problem or "RabbitMQ did not start")
        return self._url

    @property
    def started_here(self) -> bool:
        """Whether the server is ours (stopped by :meth:`stop`), not ``RABBITMQ_URL``'s."""
        return self.server is not None

    def stop(self) -> None:
        """Stop the server if we started it; a boot still under way is cut short (it gives
        up, and stops what it had started), not waited for."""
        if self._thread.is_alive() and self._booting is not None:
            self._booting.stop()
        self._thread.join(2 * STOP_SECONDS + 5)
        if self.server is not None:
            self.server.stop()

    def leftovers(self) -> list[psutil.Process]:
        """Processes of a server we started that still run (none after :meth:`stop`)."""
        return self.server.leftovers() if self.server is not None else []


def start_in_background(timeout: float = BOOT_SECONDS) -> BackgroundRabbit:
    """Begin finding or booting a RabbitMQ now; prints nothing, returns at once."""
    return BackgroundRabbit(timeout)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _low_priority() -> list[str]:
    """``nice`` in front of the node where there is one: its boot (seconds of CPU) then
    slows down what runs meanwhile as little as it can."""
    nice = shutil.which("nice")
    return [nice, "-n", "10"] if nice is not None else []
