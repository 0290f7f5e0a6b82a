"""`make serve MODE=dramatiq`: a kill -9 of a worker process loses no job, and serve says so."""

from __future__ import annotations

import httpx
import psutil

from shared.processes import wait_until

DEADLINE = 45.0


def _workers(serve_pid: int) -> list[psutil.Process]:
    """The dramatiq worker processes: children of the dramatiq main process under serve
    (not the metrics page's process, which listens on a port: make serve turns metrics on)."""
    found = []
    for child in psutil.Process(serve_pid).children():
        if "dramatiq" in " ".join(child.cmdline()):
            found += [p for p in child.children()
                      if not any(c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))]
    return found


def _talking_to(workers: list[psutil.Process], port: int) -> list[psutil.Process]:
    """Those of ``workers`` with a connection open to ``port``."""
    found = []
    for worker in workers:
        try:
            if any(c.raddr and c.raddr.port == port for c in worker.net_connections()):
                found.append(worker)
        except psutil.NoSuchProcess:
            pass
    return found


def _busy_worker(served, port: int) -> psutil.Process:
    """A dramatiq worker process in the middle of sending an email to the sink on ``port``."""
    busy: list[psutil.Process] = []

    def found() -> bool:
        busy[:] = _talking_to(_workers(served.pid), port)
        return bool(busy)

    wait_until(found, DEADLINE, "a dramatiq worker process to talk to the SMTP sink",
               interval=0.01, problem=served.problem)
    return busy[0]


def test_kill_9_of_a_worker_loses_no_job_and_serve_says_it_restarted_the_group(served):
    app = served("--mode", "dramatiq", "--workers", "2", "--email-delay", "1.0")
    try:
        app.wait_line(r"^Ctrl-C stops everything")
        assert app.wait_line(r"^page: +(\S+)/ ").group(1) == app.url
        smtp_port = int(app.wait_line(r"^smtp: +127\.0\.0\.1:(\d+)").group(1))
        ids = []
        for n in range(3):
            answer = httpx.post(app.url + "/signup", json={"email": f"k{n}@example.com"},
                                timeout=DEADLINE)
            assert answer.status_code == 202, answer.text
            ids += answer.json()["jobs"].values()
        victim = _busy_worker(app, smtp_port)
        victim.kill()
        # "(code 1); starting it again", or "(code 1) after 0.4 s; starting it again in 2 s"
        # when the group had only just started: both restart it.
        app.wait_line(r"dramatiq worker group exited \(code \d+\).*; starting it again")
        wait_until(lambda: [httpx.get(f"{app.url}/jobs/{i}").json()["status"] for i in ids]
                   == ["done"] * len(ids), DEADLINE, "every job to be done",
                   interval=0.2, problem=app.problem)
        workers = _workers(app.process.pid)
        assert len(workers) == 3 and victim.pid not in {w.pid for w in workers}  # 1 email + 2 avatar
        assert app.stop() == 0
        app.wait_line(r"^stopped\.$")
        app.wait_line(r"^jobs: every job finished$")  # not left in Redis for nobody
    finally:
        app.stop()
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_serve_takes_a_backlog_bound_and_a_worker_priority_and_the_banner_says_so(served):
    app = served("--mode", "dramatiq", "--workers", "1", "--max-backlog", "3", "--nice", "5")
    try:
        line = app.wait_line(r"^jobs: +(.*)$").group(1)
        assert "more than 3 s of work answers 503" in line, line
        assert "worker groups at nice 5" in line, line
        app.wait_line(r"^Ctrl-C stops everything")
        workers = _workers(app.process.pid)
        assert workers and all(w.nice() == 5 for w in workers), [(w, w.nice()) for w in workers]
        assert app.stop() == 0
    finally:
        app.stop()
