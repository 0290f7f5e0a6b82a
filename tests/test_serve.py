"""`make serve` runs the app in the foreground; Ctrl-C stops all it started."""

import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import psutil
import pytest

from shared.web import free_port


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "shared.serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # a shell's background job ignores SIGINT; a terminal's does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_healthy(url: str, process, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy")


@contextmanager
def _serving(mode: str, email_delay: float):
    """Run `make serve`'s command on a free port; never leave it running."""
    port = free_port()
    process = _start("--mode", mode, "--port", str(port), "--email-delay", str(email_delay))
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _stop(process, stop_signal=signal.SIGINT) -> str:
    process.send_signal(stop_signal)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    return output


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_then_stops_everything_on_a_signal(stop_signal):
    with _serving("blocking", email_delay=0.1) as (process, url):
        assert httpx.post(url + "/signup", json={"email": "ada@example.com"},
                          timeout=10).status_code == 201
        children = psutil.Process(process.pid).children(recursive=True)
        output = _stop(process, stop_signal)
    assert "mail to ada@example.com" in output
    assert "POST /signup -> 201" in output
    assert "stopped." in output
    assert not any(child.is_running() for child in children)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))  # the port is free again


def test_serve_on_a_taken_port_says_so_and_exits_2(taken_port):
    result = subprocess.run([sys.executable, "-m", "shared.serve", "--port", str(taken_port)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"Port {taken_port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unknown_mode():
    result = subprocess.run([sys.executable, "-m", "shared.serve", "--mode", "someday"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_ctrl_c_in_nowait_mode_lets_the_job_in_flight_finish():
    with _serving("nowait", email_delay=0.5) as (process, url):
        assert httpx.post(url + "/signup", json={"email": "late@example.com"},
                          timeout=10).status_code == 202
        output = _stop(process)  # while the email is still being sent
    assert "waiting for 1 background job(s)" in output
    assert output.index("mail to late@example.com") < output.index("stopped.")
