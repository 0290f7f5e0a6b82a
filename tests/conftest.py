"""Shared fixtures, and a guard: the suite must leave no process behind."""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from shared.smtp_sink import SmtpSink


@pytest.fixture
def sink():
    """A real SMTP sink that answers after 0.3 s, stopped after the test."""
    with SmtpSink(delay=0.3) as running:
        yield running


@pytest.fixture
def fast_sink():
    """A real SMTP sink with no artificial delay."""
    with SmtpSink(delay=0.0) as running:
        yield running


@pytest.fixture
def taken_port():
    """A loopback port that something is listening on for the whole test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any child process (server, worker, kernel) outlived it."""
    me = psutil.Process()
    deadline = time.monotonic() + 10
    while (children := _live(me.children(recursive=True))) and time.monotonic() < deadline:
        time.sleep(0.2)
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
