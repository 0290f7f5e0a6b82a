"""`make serve MODE=redis-queue`: kill -9 of a worker loses no job, and the log says so."""

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

from shared.redis_queue.queue import connect
from shared.web import free_port

DEADLINE = 30.0


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
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

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

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        while not self._new.empty():
            self.lines.append(self._new.get())
        return self.process.returncode


def test_kill_9_of_a_worker_loses_no_job_and_the_log_says_so():
    served = Served("--mode", "redis-queue", "--workers", "3", "--email-delay", "3")
    try:
        banner = served.wait_line(r"^jobs: +3 worker processes \((.*)\) take jobs from the "
                                  r"Redis list (\S+):queue; .* within (\d+(\.\d+)?) s")
        pids = {name: int(pid) for name, pid in re.findall(r"(w\d+) pid (\d+)", banner[1])}
        prefix, recovery = banner[2], float(banner[3])
        assert len(pids) == 3 and all(psutil.pid_exists(p) for p in pids.values())
        redis_line = served.wait_line(r"^redis: +(\S+)")
        r = connect(redis_line[1])

        answer = httpx.post(served.url + "/signup", json={"email": "ada@example.com"},
                            timeout=DEADLINE)
        assert answer.status_code == 202
        email_job = answer.json()["jobs"]["welcome_email"]
        deadline = time.monotonic() + DEADLINE
        holder = None
        while holder is None:  # the sink holds the email 3 s: find who is sending it
            assert time.monotonic() < deadline, "no worker took the email job"
            status = httpx.get(f"{served.url}/jobs/{email_job}").json()["status"]
            held = [n for n in pids if r.lrange(f"{prefix}:processing:{n}", 0, -1)
                    and email_job.encode() in b"".join(r.lrange(f"{prefix}:processing:{n}", 0, -1))]
            holder = held[0] if held and status == "running" else None
            time.sleep(0.02)
        psutil.Process(pids[holder]).kill()
        killed_at = time.monotonic()

        served.wait_line(rf"worker {holder} \(pid {pids[holder]}\) died \(exit code -9\); "
                         r"started w4 \(pid \d+\)")
        served.wait_line(rf"recovered 1 job\(s\) of dead worker {holder} .*back in the queue")
        assert time.monotonic() - killed_at < recovery + 2  # margin for a busy machine
        served.wait_line(r"mail to ada@example.com", timeout=DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while (status := httpx.get(f"{served.url}/jobs/{email_job}").json())["status"] != "done":
            assert time.monotonic() < deadline, f"the recovered job is still {status}"
            time.sleep(0.05)
        assert status["attempts"] == 2
        r.close()
    finally:
        code = served.stop()
    assert code == 0, "\n".join(served.lines)
    assert served.lines[-1] == "stopped."
    assert sum("mail to ada@example.com" in line for line in served.lines) == 1
    assert "jobs: every job finished" in served.lines
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
