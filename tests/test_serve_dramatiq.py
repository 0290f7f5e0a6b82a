"""`make serve MODE=dramatiq`: a kill -9 of a worker process loses no job, and serve says so."""

from __future__ import annotations

import queue as queues
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil

from shared.web import free_port

DEADLINE = 45.0


class Served:
    """The served app's process, and every line it printed so far."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "shared.serve", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._new: queues.SimpleQueue[str] = queues.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = DEADLINE) -> re.Match:
        """The first line so far or to come that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            try:
                self.lines.append(self._new.get(timeout=max(0.01, deadline - time.monotonic())))
            except queues.Empty:
                raise AssertionError(f"waited {timeout:g} s for a line matching {pattern!r}; "
                                     f"got:\n" + "\n".join(self.lines)) from None

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _workers(serve_pid: int) -> list[psutil.Process]:
    """The dramatiq worker processes: children of the dramatiq main process under serve."""
    found = []
    for child in psutil.Process(serve_pid).children():
        if "dramatiq" in " ".join(child.cmdline()):
            found += child.children()
    return found


def _busy_worker(serve_pid: int, port: int) -> psutil.Process:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for worker in _workers(serve_pid):
            try:
                if any(c.raddr and c.raddr.port == port for c in worker.net_connections()):
                    return worker
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.01)
    raise AssertionError(f"no dramatiq worker process talked to the SMTP sink within {DEADLINE:g} s")


def test_kill_9_of_a_worker_loses_no_job_and_serve_says_it_restarted_the_group():
    served = Served("--mode", "dramatiq", "--workers", "2", "--email-delay", "1.0")
    try:
        served.wait_line(r"^Ctrl-C stops everything")
        assert served.wait_line(r"^page: +(\S+)/ ").group(1) == served.url
        smtp_port = int(served.wait_line(r"^smtp: +127\.0\.0\.1:(\d+)").group(1))
        ids = []
        for n in range(3):
            answer = httpx.post(served.url + "/signup", json={"email": f"k{n}@example.com"},
                                timeout=DEADLINE)
            assert answer.status_code == 202, answer.text
            ids += answer.json()["jobs"].values()
        victim = _busy_worker(served.process.pid, smtp_port)
        victim.kill()
        # "(code 1); starting it again", or "(code 1) after 0.4 s; starting it again in 2 s"
        # when the group had only just started: both restart it.
        served.wait_line(r"dramatiq worker group exited \(code \d+\).*; starting it again")
        deadline = time.monotonic() + DEADLINE
        while (statuses := [httpx.get(f"{served.url}/jobs/{i}").json()["status"] for i in ids]) \
                != ["done"] * len(ids):
            assert time.monotonic() < deadline, f"waited {DEADLINE:g} s for every job: {statuses}"
            time.sleep(0.2)
        workers = _workers(served.process.pid)
        assert len(workers) == 3 and victim.pid not in {w.pid for w in workers}  # 1 email + 2 avatar
        assert served.stop() == 0
        served.wait_line(r"^stopped\.$")
        served.wait_line(r"^jobs: every job finished$")  # not left in Redis for nobody
    finally:
        served.stop()
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
