"""The test kit every test file shares, and a guard: the suite must leave no process behind.

Fixtures:

- ``store``: a fresh :class:`shared.store.Store`, closed and removed after the test.
- ``redis_url``: the run's one Redis (:func:`shared.redis_server.redis_url`), for the
  whole session; stopped by :func:`pytest_sessionfinish` if this process started it.
- ``sink``, ``fast_sink``: real SMTP sinks (0.3 s per message, and none).
- ``closed_port``: a port nothing listens on, held so no one else can take it.
- ``taken_port``: a port something listens on for the whole test.
- ``served``: starts ``make serve``'s module on a port the OS picks; every one is
  stopped after the test.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import psutil
import pytest

from shared import net, redis_server
from shared.processes import stop_tree, wait_until
from shared.smtp_sink import SmtpSink
from shared.store import Store

SERVE_DEADLINE = 45.0  # `make serve` with Redis and worker processes, on a loaded machine


@pytest.fixture
def store() -> Iterator[Store]:
    """A new, empty store in a folder of its own, closed and removed after the test."""
    fresh = Store.fresh()
    yield fresh
    fresh.remove()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The run's Redis: ``REDIS_URL``, a local one, or one embedded server for the session.

    A test about the embedded server's own lifecycle must not stop this one: it
    starts its own (see tests/test_redis_server.py).
    """
    return redis_server.redis_url()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A real SMTP sink that answers after 0.3 s, stopped after the test."""
    with SmtpSink(delay=0.3) as running:
        yield running


@pytest.fixture
def fast_sink() -> Iterator[SmtpSink]:
    """A real SMTP sink with no artificial delay."""
    with SmtpSink(delay=0.0) as running:
        yield running


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where a connection is refused ("the server is down") for the
    whole test: held bound, so another test or xdist worker cannot start listening there."""
    with net.closed_port() as port:
        yield port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port that something is listening on for the whole test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


class Served:
    """``python -m shared.serve ARGS --port 0`` in a child process, and every line it printed.

    The port is the one the OS gave the server, read back from the banner, so no
    other test (or xdist worker) can take it first. ``url`` is set once the
    banner is out (its last line, "Ctrl-C stops everything."): the server is listening,
    and a Ctrl-C from then on stops it cleanly.
    """

    def __init__(self, *args: str, timeout: float = SERVE_DEADLINE) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "shared.serve", *args, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # a shell's background job ignores SIGINT; a terminal's does not
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="served-reader", daemon=True)
        self._reader.start()
        self.url = self.wait_line(r"^app: +(http://\S+)$", timeout)[1]
        self.wait_line(r"^Ctrl-C stops everything", timeout)
        self.port = int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        """Every line printed so far."""
        with self._changed:
            return "\n".join(self.lines)

    def problem(self) -> str | None:
        """Why serve cannot be serving (it exited), or None: for ``wait_until(problem=...)``."""
        if self.process.poll() is None:
            return None
        return f"serve exited with code {self.process.returncode}; it printed:\n{self.output}"

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_line(self, pattern: str, timeout: float = SERVE_DEADLINE) -> re.Match[str]:
        """The first line so far or to come that matches ``pattern``; fails at once
        if serve's output ends (it exited) without one."""
        found: list[re.Match[str]] = []

        def matched_or_ended() -> bool:
            found[:] = [m for line in self.lines if (m := re.search(pattern, line))][:1]
            return bool(found) or self._ended

        with self._changed:
            self._changed.wait_for(matched_or_ended, timeout)
            if found:
                return found[0]
            why = (f"serve exited (code {self.process.poll()}) without" if self._ended
                   else f"waited {timeout:g} s for")
            raise AssertionError(f"{why} a line matching {pattern!r}; it printed:\n"
                                 + "\n".join(self.lines))

    def stop(self, stop_signal: int = signal.SIGINT, timeout: float = SERVE_DEADLINE) -> int:
        """Send ``stop_signal`` (Ctrl-C by default), wait for the exit and the last line;
        return the exit code. Kills the whole tree if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_tree(self.process)
        self._reader.join(5)
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    """``served("--mode", "blocking", ...)`` starts `make serve`'s module on a port the OS
    picks and returns a :class:`Served`; every one started is stopped after the test."""
    started: list[Served] = []

    def serve(*args: str, timeout: float = SERVE_DEADLINE) -> Served:
        started.append(Served(*args, timeout=timeout))
        return started[-1]

    yield serve
    for running in started:
        running.stop()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any child process (server, worker, kernel) outlived it."""
    redis_server.stop_embedded()  # the run's shared Redis, on purpose; not past it
    me = psutil.Process()
    try:
        wait_until(lambda: not _live(me.children(recursive=True)), 10,
                   "the test run's child processes to exit", interval=0.2)
        return
    except TimeoutError:
        children = _live(me.children(recursive=True))
    if children:
        names = ", ".join(f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in children)
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"ERROR: processes left behind by the test run: {names}", red=True)
        for process in children:
            process.kill()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _live(processes):
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


NEEDS_BROWSER = "needs-browser"  # a notebook cell's tag: it drives a real headless Chromium
NEEDS_RABBITMQ = "needs-rabbitmq"  # a notebook cell's tag: it runs against a real RabbitMQ


def _tagged(items, tag):
    return [item for item in items
            if tag in (getattr(getattr(item, "cell", None), "metadata", {}) or {}).get("tags", [])]


def pytest_collection_modifyitems(config, items):
    """Skip the notebook cells tagged ``needs-browser`` (lesson 04's live page) when no
    headless Chromium can run here, and those tagged ``needs-rabbitmq`` (lesson 07's
    RabbitMQ cells) when no RabbitMQ can be had (``RABBITMQ_URL`` unset and no
    ``rabbitmq-server``), with the reason; the cells after them do not use
    their variables, so they still run. ``make test`` collects tests/ with the notebooks,
    so this hook is loaded; a run of the notebooks alone needs ``-p tests.conftest``."""
    if tagged := _tagged(items, NEEDS_BROWSER):
        from shared.browser import browser_problem  # noqa: PLC0415 (selenium only when a notebook needs it)

        if (problem := browser_problem()) is not None:
            for item in tagged:
                item.add_marker(pytest.mark.skip(reason=f"this cell drives a headless browser: {problem}"))
    if tagged := _tagged(items, NEEDS_RABBITMQ):
        from shared.rabbitmq_server import rabbitmq_problem  # noqa: PLC0415

        if (problem := rabbitmq_problem()) is not None:
            for item in tagged:
                item.add_marker(pytest.mark.skip(reason=f"this cell runs against RabbitMQ: {problem}"))
