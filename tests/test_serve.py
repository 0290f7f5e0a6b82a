"""`make serve` runs the app in the foreground; Ctrl-C stops all it started."""

import signal
import socket
import subprocess
import sys
import threading
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
def _serving(mode: str, email_delay: float, extra: tuple[str, ...] = ()):
    """Run `make serve`'s command on a free port; never leave it running."""
    port = free_port()
    process = _start("--mode", mode, "--port", str(port), "--email-delay", str(email_delay), *extra)
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
        output = _stop(process, stop_signal)
    assert "mail to ada@example.com" in output
    assert "POST /signup -> 201" in output
    assert output.splitlines()[-1] == "stopped."
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == "zombie"
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


def test_ctrl_c_in_nowait_mode_lets_the_jobs_in_flight_finish():
    with _serving("nowait", email_delay=2.0) as (process, url):
        assert httpx.post(url + "/signup", json={"email": "late@example.com"},
                          timeout=10).status_code == 202
        output = _stop(process)  # the provider takes 2 s: the email is surely still on its way
    assert "waiting for 2 job(s) to finish" in output
    assert output.index("mail to late@example.com") < output.index("stopped.")
    assert "jobs: every job finished" in output


def test_ctrl_c_under_load_answers_every_request_in_flight():
    """8 clients keep signing up in blocking mode; Ctrl-C must not turn any into a 5xx."""
    statuses, errors, stop = [], [], threading.Event()

    def client(n):
        with httpx.Client(timeout=30) as http:
            for k in range(1000):
                if stop.is_set():
                    return
                try:
                    statuses.append(http.post(url + "/signup",
                                              json={"email": f"c{n}-{k}@example.com"}).status_code)
                except httpx.TransportError as exc:  # refused after the stop: fine
                    errors.append(exc)
                    return

    with _serving("blocking", email_delay=0.3) as (process, url):
        clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 30
        while len(statuses) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(statuses) >= 8, "waited 30 s for 8 answers before pressing Ctrl-C"
        output = _stop(process)
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert statuses and set(statuses) == {201}, sorted(set(statuses))
    assert "in flight" in output
    lines = output.splitlines()
    for line in lines:  # every log line whole: one event per line, never two glued together
        assert line.count(" -> ") <= 1 and line.count("mail to") <= 1, line
    assert lines[-1] == "stopped."


def test_a_refusing_sink_is_announced_and_a_silly_share_refused():
    with _serving("blocking", email_delay=0.0, extra=("--refuse-share", "0.5")) as (process, url):
        output = _stop(process)
    assert "refuses 50% of attempts with 451" in output
    result = subprocess.run([sys.executable, "-m", "shared.serve", "--refuse-share", "1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--refuse-share must be at least 0 and below 1" in result.stderr
