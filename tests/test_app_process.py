"""The app in a child process: it serves, drains on SIGTERM, and loses its queue on SIGKILL."""

import time

import httpx
import psutil
import pytest

from shared.app_process import AppFailedToStart, AppProcess
from shared.processes import wait_until
from shared.smtp_sink import SmtpSink

DEADLINE = 30.0


def test_sigkill_loses_every_job_queued_in_memory_and_the_count_is_known(store):
    # The provider takes 1 s per email, so the kill lands while email 2 is still in
    # flight, even on a busy machine: its connection dies before the provider's 250 OK.
    with SmtpSink(delay=1.0) as sink:
        app = AppProcess("thread-queue", smtp_port=sink.port, store_path=store.path, workers=1,
                         avatar_canvas=300).start()
        try:
            for n in range(6):
                answer = httpx.post(f"{app.url}/signup", json={"email": f"u{n}@example.com"},
                                    timeout=DEADLINE)
                assert answer.status_code == 202
            wait_until(lambda: len(sink.attempts) >= 2, DEADLINE,
                       "the second email to reach the provider")
            code = app.kill()
        finally:
            app.stop()
        assert code == -9
        time.sleep(sink.delay + 0.5)  # long enough for the email in flight, had it survived
        assert len(sink.inbox) == 1  # one worker: email 1 arrived, email 2 died in flight
    counts = store.counts()
    # The store outlives the process: it still says what was queued, forever.
    assert counts == {"queued": 9, "running": 1, "done": 2, "failed": 0}
    assert not psutil.pid_exists(app.pid) or psutil.Process(app.pid).status() == psutil.STATUS_ZOMBIE


def test_sigterm_drains_the_queue_before_the_app_exits(store):
    with SmtpSink(delay=0.05) as sink:
        with AppProcess("thread-queue", smtp_port=sink.port, store_path=store.path, workers=2,
                        avatar_canvas=300) as app:
            for n in range(4):
                httpx.post(f"{app.url}/signup", json={"email": f"u{n}@example.com"}, timeout=DEADLINE)
            assert app.stop() == 0
        assert len(sink.inbox) == 4
    assert store.counts()["done"] == 8


def test_an_app_that_cannot_start_says_why(store):
    app = AppProcess("no-such-mode", smtp_port=1, store_path=store.path)
    with pytest.raises(AppFailedToStart, match="unknown mode 'no-such-mode'"):
        app.start(timeout=20)
