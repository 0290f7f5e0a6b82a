import threading

from shared.background import FireAndForget


def test_wait_returns_once_every_job_has_run():
    background, done = FireAndForget(), []
    for n in range(5):
        background.submit(done.append, n)
    assert background.wait(timeout=10)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert background.pending == 0


def test_errors_are_kept_where_nobody_looks():
    background = FireAndForget()

    def fail(address):
        raise ConnectionRefusedError(f"cannot mail {address}")

    background.submit(fail, "ada@example.com")
    assert background.wait(timeout=10)
    assert background.errors == ["ConnectionRefusedError: cannot mail ada@example.com"]


def test_wait_gives_up_after_its_timeout_and_says_so():
    background, release = FireAndForget(), threading.Event()
    background.submit(release.wait, 10)
    assert background.wait(timeout=0.1) is False
    assert background.pending == 1
    release.set()
    assert background.wait(timeout=10)


def test_progress_shows_finished_jobs_out_of_those_pending(capsys):
    background, release = FireAndForget(), threading.Event()
    for _ in range(3):
        background.submit(release.wait, 10)
    opener = threading.Timer(0.1, release.set)  # the jobs end while we wait
    opener.start()
    assert background.wait(timeout=10, progress=True)
    opener.join()
    assert "3/3" in capsys.readouterr().err


def test_progress_counts_jobs_that_ended_before_the_wait(capsys):
    background = FireAndForget()
    background.submit(lambda: None)
    while background.pending:
        pass
    assert background.wait(progress=True)
    assert "1/1" in capsys.readouterr().err
    assert background.wait(progress=True)  # nothing new since: no bar
    assert capsys.readouterr().err == ""


def test_no_progress_bar_when_nothing_is_pending(capsys):
    assert FireAndForget().wait(progress=True)
    assert capsys.readouterr().err == ""
