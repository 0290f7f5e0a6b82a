"""The SQLite store: shared by threads and by processes."""

import subprocess
import sys
import threading

import pytest

from shared.job import new_jobs
from shared.store import AccountExists, Span, Store


def test_an_address_has_one_account_whatever_its_case(store):
    store.create_account("ada@example.com")
    with pytest.raises(AccountExists):
        store.create_account("ADA@example.com")
    assert store.account("Ada@Example.com").email == "ada@example.com"


def test_a_refused_account_queues_none_of_its_jobs(store):
    store.create_account("ada@example.com", new_jobs("ada@example.com", "r1"))
    with pytest.raises(AccountExists):
        store.create_account("ada@example.com", new_jobs("ada@example.com", "r2"))
    assert [job.request_id for job in store.jobs()] == ["r1", "r1"]


def test_a_job_goes_queued_running_then_done_or_failed(store):
    email, kinds = "ada@example.com", ("welcome_email", "avatar")
    ok, bad = new_jobs(email, "r1", kinds)
    store.create_account(email, [ok, bad])
    assert [store.job(j.id).status for j in (ok, bad)] == ["queued", "queued"]
    assert store.start_attempt(ok.id) == 1
    assert store.job(ok.id).status == "running"
    store.finish_attempt(ok.id, Span(ok.id, "r1", ok.kind, 1, 1.0, 2.0))
    store.start_attempt(bad.id)
    store.finish_attempt(bad.id, Span(bad.id, "r1", bad.kind, 1, 1.0, 1.5, "OSError: boom"))
    assert (store.job(ok.id).status, store.job(bad.id).status) == ("done", "failed")
    assert store.job(bad.id).error == "OSError: boom"
    assert store.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 1}
    assert [span.ok for span in store.spans()] == [True, False]


def test_a_failed_attempt_that_will_be_retried_is_queued_again_with_its_error(store):
    [job] = new_jobs("ada@example.com", "r1", ("welcome_email",))
    store.create_account("ada@example.com", [job])
    store.start_attempt(job.id)
    store.finish_attempt(job.id, Span(job.id, "r1", job.kind, 1, 1.0, 2.0, "timeout"),
                         will_retry=True)
    assert (store.job(job.id).status, store.job(job.id).error) == ("queued", "timeout")
    assert store.start_attempt(job.id) == 2


def test_progress_counts_jobs_after_a_bookmark(store):
    store.create_account("a@example.com", new_jobs("a@example.com", "r1"))
    bookmark = store.last_seq()
    later = new_jobs("b@example.com", "r2")
    store.create_account("b@example.com", later)
    assert store.progress_since(bookmark) == (0, 2)
    store.start_attempt(later[0].id)
    store.finish_attempt(later[0].id, Span(later[0].id, "r2", "welcome_email", 1, 0.0, 1.0))
    assert store.progress_since(bookmark) == (1, 2)


def test_many_threads_write_at_once_without_losing_a_row(store):
    def sign_up(n):
        store.create_account(f"user{n}@example.com", new_jobs(f"user{n}@example.com", f"r{n}"))

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(store.jobs()) == 40


def test_another_process_sees_and_writes_the_same_file(store):
    [job] = new_jobs("ada@example.com", "r1", ("avatar",))
    store.create_account("ada@example.com", [job])
    child = f"""
from shared.store import Store
store = Store({str(store.path)!r})
store.start_attempt({job.id!r})
store.set_avatar("ada@example.com", b"png from the child")
"""
    subprocess.run([sys.executable, "-c", child], check=True, timeout=30)
    assert store.job(job.id).status == "running"
    assert store.avatar("ada@example.com") == b"png from the child"


def test_remove_deletes_the_fresh_store_and_is_idempotent():
    store = Store.fresh()
    store.create_account("ada@example.com")
    store.remove()
    store.remove()
    assert not store.path.exists()
    with pytest.raises(RuntimeError, match="closed"):
        store.account("ada@example.com")


def test_forget_signup_removes_the_account_and_only_its_jobs(store):
    kept, dropped = new_jobs("kept@example.com", "r1"), new_jobs("gone@example.com", "r2")
    store.create_account("kept@example.com", kept)
    store.create_account("gone@example.com", dropped)
    store.forget_signup("gone@example.com", [job.id for job in dropped])
    assert store.account("gone@example.com") is None
    assert [job.id for job in store.jobs()] == [job.id for job in kept]
    store.create_account("gone@example.com", [])  # the address is free again


def test_a_thread_that_ends_closes_its_connection(store):
    """A thread per job (or per request) must not leave a connection behind for every thread."""
    store.counts()  # this thread's connection stays: this thread still runs
    before = store.open_connections

    def use_the_store() -> None:
        store.counts()
        assert store.open_connections == before + 1

    threads = [threading.Thread(target=use_the_store) for _ in range(20)]
    for thread in threads:
        thread.start()
        thread.join()
    assert store.open_connections == before
    store.create_account("ada@example.com")  # the store still works, in this thread
    assert store.account("ada@example.com") is not None


def test_a_thread_still_running_keeps_its_connection_and_close_closes_it(tmp_path):
    store = Store(tmp_path / "store.sqlite3")
    ready, done = threading.Event(), threading.Event()

    def hold() -> None:
        store.counts()
        ready.set()
        done.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(5)
    assert store.open_connections == 2  # this thread's (the schema) and the holder's
    store.close()
    assert store.open_connections == 0
    done.set()
    thread.join()  # its connection, closed already, is not closed twice
    assert store.open_connections == 0
    with pytest.raises(RuntimeError, match="closed"):
        store.counts()


def test_an_attempt_that_ends_late_does_not_overwrite_a_newer_attempt(store):
    """Dramatiq re-enqueues a retry before the failed attempt's status is written:
    the retry may start (and even finish) first, and keeps its own status."""
    [job] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
    store.add_jobs([job])
    first = store.start_attempt(job.id)
    second = store.start_attempt(job.id)  # the retry, on another thread
    store.end_attempt(job.id, "done", attempt=second)
    store.end_attempt(job.id, "queued", "451 try again", attempt=first)  # late
    status = store.job(job.id)
    assert (status.status, status.attempts, status.error) == ("done", 2, None)


def test_a_requeued_job_turns_queued_only_if_no_worker_started_it_since(store):
    [job] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
    store.add_jobs([job])
    store.start_attempt(job.id)
    store.end_attempt(job.id, "failed", "550 no such user")
    attempts = store.job(job.id).attempts
    assert store.mark_requeued(job.id, attempts)
    assert store.job(job.id).status == "queued"
    store.start_attempt(job.id)  # a worker took it again and runs it now
    assert not store.mark_requeued(job.id, attempts)
    assert store.job(job.id).status == "running"


def test_starting_children_while_threads_come_and_go_never_hangs_a_fork(store):
    """Threads that used the store end while the main thread starts children (with a
    ``preexec_fn``, as every course child has): the fork drops their thread-local
    connections, and closing one there, without the lock's owner, hung the child forever."""
    import os  # noqa: PLC0415
    import time  # noqa: PLC0415

    import psutil  # noqa: PLC0415

    from shared.processes import start_child  # noqa: PLC0415

    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            users = [threading.Thread(target=store.account, args=(f"u{n + k}@example.com",))
                     for k in range(4)]
            for user in users:
                user.start()
            for user in users:
                user.join()
            n += 4

    churners = [threading.Thread(target=churn, daemon=True) for _ in range(2)]
    for thread in churners:
        thread.start()
    launched, gave_up = threading.Event(), threading.Event()
    started = []

    def launch_many() -> None:
        for _ in range(150):
            if gave_up.is_set():
                return
            child = start_child(["/bin/true"])
            started.append(child)
            child.wait(timeout=10)
        launched.set()

    # start_child runs on the main thread (it forks from the thread that calls it); past the
    # deadline a watchdog kills the hung children, so the blocked Popen returns and the test fails
    def watchdog() -> None:
        if launched.wait(60):
            return
        gave_up.set()
        while not launched.is_set() and not finished.is_set():
            for child in psutil.Process(os.getpid()).children():
                if child.pid not in {c.pid for c in started}:
                    child.kill()
            time.sleep(0.5)
    finished = threading.Event()
    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    began = time.monotonic()
    try:
        launch_many()
    except Exception:  # noqa: BLE001 - a child killed by the watchdog can make Popen raise
        pass
    finally:
        finished.set()
        stop.set()
        for thread in (*churners, guard):
            thread.join(10)
    assert launched.is_set(), (f"waited 60 s for 150 children to start while threads used the "
                               f"store; started {len(started)} in {time.monotonic() - began:.0f} s: "
                               "a forked child hung")
