"""`make serve` runs the app in the foreground; Ctrl-C stops all it started."""

import signal
import socket
import subprocess
import sys
import threading

import httpx
import psutil
import pytest

from shared.processes import wait_until


def _serving(served, mode: str, email_delay: float, extra: tuple[str, ...] = ()):
    """`make serve`'s command on a port the OS picks (the fixture stops it after the test)."""
    return served("--mode", mode, "--email-delay", str(email_delay), *extra)


def _stop(running, stop_signal=signal.SIGINT) -> str:
    code = running.stop(stop_signal, timeout=15)
    assert code == 0, running.output
    return running.output


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_then_stops_everything_on_a_signal(served, stop_signal):
    running = _serving(served, "blocking", email_delay=0.1)
    assert httpx.post(running.url + "/signup", json={"email": "ada@example.com"},
                      timeout=10).status_code == 201
    output = _stop(running, stop_signal)
    assert "mail to ada@example.com" in output
    assert "POST /signup -> 201" in output
    assert output.splitlines()[-1] == "stopped."
    assert not psutil.pid_exists(running.pid) or psutil.Process(running.pid).status() == "zombie"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", running.port))  # the port is free again


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


def test_ctrl_c_in_nowait_mode_lets_the_jobs_in_flight_finish(served):
    running = _serving(served, "nowait", email_delay=2.0)
    assert httpx.post(running.url + "/signup", json={"email": "late@example.com"},
                      timeout=10).status_code == 202
    output = _stop(running)  # the provider takes 2 s: the email is surely still on its way
    assert "waiting for 2 job(s) to finish" in output
    assert output.index("mail to late@example.com") < output.index("stopped.")
    assert "jobs: every job finished" in output


def test_ctrl_c_under_load_answers_every_request_in_flight(served):
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

    running = _serving(served, "blocking", email_delay=0.3)
    url = running.url
    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in clients:
        thread.start()
    try:
        wait_until(lambda: len(statuses) >= 8, 30, "8 answers before pressing Ctrl-C",
                   problem=running.problem)
        output = _stop(running)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert statuses and set(statuses) == {201}, sorted(set(statuses))
    assert "in flight" in output
    lines = output.splitlines()
    for line in lines:  # every log line whole: one event per line, never two glued together
        assert line.count(" -> ") <= 1 and line.count("mail to") <= 1, line
    assert lines[-1] == "stopped."


def test_a_refusing_sink_is_announced_and_a_silly_share_refused(served):
    output = _stop(_serving(served, "blocking", email_delay=0.0, extra=("--refuse-share", "0.5")))
    assert "refuses 50% of attempts with 451" in output
    result = subprocess.run([sys.executable, "-m", "shared.serve", "--refuse-share", "1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--refuse-share must be at least 0 and below 1" in result.stderr
