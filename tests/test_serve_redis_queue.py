"""`make serve MODE=redis-queue`: kill -9 of a worker loses no job, and the log says so."""

from __future__ import annotations

import re

import httpx
import psutil

from shared.processes import wait_until
from shared.redis_queue.queue import connect

DEADLINE = 30.0


def test_kill_9_of_a_worker_loses_no_job_and_the_log_says_so(served):
    app = served("--mode", "redis-queue", "--workers", "3", "--email-delay", "3")
    try:
        banner = app.wait_line(r"^jobs: +3 worker processes \((.*)\) take jobs from the "
                                  r"Redis list (\S+):queue; .* within (\d+(\.\d+)?) s")
        pids = {name: int(pid) for name, pid in re.findall(r"(w\d+) pid (\d+)", banner[1])}
        prefix, recovery = banner[2], float(banner[3])
        assert len(pids) == 3 and all(psutil.pid_exists(p) for p in pids.values())
        redis_line = app.wait_line(r"^redis: +(\S+)")
        r = connect(redis_line[1])

        answer = httpx.post(app.url + "/signup", json={"email": "ada@example.com"},
                            timeout=DEADLINE)
        assert answer.status_code == 202
        email_job = answer.json()["jobs"]["welcome_email"]

        holders: list[str] = []

        def running_email_held() -> bool:
            """Whether a worker holds the email job while it runs (the sink holds it 3 s)."""
            if httpx.get(f"{app.url}/jobs/{email_job}").json()["status"] != "running":
                return False
            holders[:] = [n for n in pids if email_job.encode()
                          in b"".join(r.lrange(f"{prefix}:processing:{n}", 0, -1))]
            return bool(holders)

        wait_until(running_email_held, DEADLINE, "a worker to hold the running email job",
                   problem=app.problem)
        victim = holders[0]
        psutil.Process(pids[victim]).kill()

        app.wait_line(rf"worker {victim} \(pid {pids[victim]}\) died \(exit code -9\); "
                         r"started w4 \(pid \d+\)")
        # The reaper's deadline is the heartbeat's TTL; a busy machine gets 2 s more.
        app.wait_line(rf"recovered 1 job\(s\) of dead worker {victim} .*back in the queue",
                         timeout=recovery + 2)
        app.wait_line(r"mail to ada@example.com", timeout=DEADLINE)
        wait_until(lambda: httpx.get(f"{app.url}/jobs/{email_job}").json()["status"] == "done",
                   DEADLINE, "the recovered email job to be done", problem=app.problem)
        assert httpx.get(f"{app.url}/jobs/{email_job}").json()["attempts"] == 2
        r.close()
    finally:
        code = app.stop()
    assert code == 0, "\n".join(app.lines)
    assert app.lines[-1] == "stopped."
    assert sum("mail to ada@example.com" in line for line in app.lines) == 1
    assert "jobs: every job finished" in app.lines
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
