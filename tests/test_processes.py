"""shared.processes with real processes: children die with their parent, trees stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from shared.processes import LoggedChild, start_child, stop_tree, wait_until

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")


def running(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie is dead enough."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def python(script: str, **kwargs) -> subprocess.Popen[str]:
    """A Python helper process that prints pids, one per line, on stdout."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, **kwargs)


def read_pid(process: subprocess.Popen[str], what: str) -> int:
    line = process.stdout.readline()  # the helper prints within a second or two
    assert line.strip().isdigit(), f"expected the pid of {what}, got {line!r}"
    return int(line)


@linux_only
@pytest.mark.parametrize("from_thread", [False, True], ids=["main-thread", "short-lived-thread"])
def test_a_child_dies_when_its_parent_is_killed(from_thread):
    parent = python(f"""
        import threading, time
        from shared.processes import start_child
        started = []
        def start():
            started.append(start_child(["sleep", "60"]))
        if {from_thread}:
            thread = threading.Thread(target=start)
            thread.start()
            thread.join()  # the starting thread is gone; the child must live on
        else:
            start()
        print(started[0].pid, flush=True)
        time.sleep(60)
    """)
    try:
        child = read_pid(parent, "the child")
        time.sleep(0.3)
        assert running(child), "the child died with the thread that started it"
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not running(child), 10, "the child to die with its parent")
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()


def test_stop_tree_kills_grandchildren_and_a_child_ignoring_sigterm():
    script = textwrap.dedent("""
        import signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen(["sleep", "60"], start_new_session=True)
        print(grandchild.pid, flush=True)
        time.sleep(60)
    """)
    child = start_child([sys.executable, "-c", script], stdout=subprocess.PIPE)
    grandchild = int(child.stdout.readline())
    child.stdout.close()
    assert running(grandchild)

    started = time.monotonic()
    stop_tree(child, timeout=0.5)
    waited = time.monotonic() - started

    assert child.returncode == -signal.SIGKILL, "SIGTERM is ignored: only SIGKILL can stop it"
    assert waited >= 0.5, "SIGKILL came before the timeout"
    assert not running(grandchild), "the grandchild in its own session survived"
    stop_tree(child)  # idempotent
    stop_tree(child.pid)


def test_stop_tree_gives_sigterm_its_chance():
    child = start_child(["sleep", "60"])
    started = time.monotonic()
    stop_tree(child, timeout=30)
    assert child.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 20, "stop_tree waited for its timeout, not for the exit"


def test_stop_tree_takes_a_pid_and_reaps_it():
    child = start_child(["sleep", "60"])
    stop_tree(child.pid, timeout=10)
    assert not psutil.pid_exists(child.pid) or not running(child.pid)
    with pytest.raises(ChildProcessError):  # already reaped by stop_tree
        os.waitpid(child.pid, 0)
    child.returncode = -signal.SIGTERM  # Popen cannot know: tell it, so it does not wait


@linux_only
def test_stop_tree_reaches_the_group_after_its_leader_is_gone():
    # The leader exits at once; its child, same group, is reparented away from us.
    script = ("import subprocess\n"
              "member = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL)\n"
              "print(member.pid, flush=True)\n")
    leader = start_child([sys.executable, "-c", script], stdout=subprocess.PIPE)
    member = int(leader.stdout.readline())
    leader.stdout.close()
    leader.wait(10)
    assert running(member) and member not in {p.pid for p in psutil.Process().children(recursive=True)}
    stop_tree(leader, timeout=5)
    wait_until(lambda: not running(member), 10, "the group member to die")


def test_stop_tree_refuses_to_stop_this_process():
    with pytest.raises(ValueError, match="would stop this process"):
        stop_tree(os.getpid())


@linux_only
def test_a_subreaper_collects_a_double_forked_daemon():
    # The helper, not pytest, becomes the subreaper: the test process must stay as it is.
    helper = python("""
        import os, subprocess, sys, time
        from shared.processes import become_subreaper, kill_descendants, wait_until
        assert become_subreaper()
        daemonize = (
            "import os, subprocess\\n"
            "if os.fork() == 0:\\n"
            "    os.setsid()\\n"
            "    sleeper = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL,\\n"
            "                               stderr=subprocess.DEVNULL)\\n"
            "    print(sleeper.pid, flush=True)\\n"
            "    os._exit(0)\\n"
            "os.wait()\\n"
        )
        first = subprocess.run([sys.executable, "-c", daemonize], capture_output=True, text=True)
        sleeper = int(first.stdout)
        parent = lambda: open(f"/proc/{sleeper}/stat").read().rsplit(")", 1)[1].split()[1]
        wait_until(lambda: parent() == str(os.getpid()), 10,
                   "the sleep to be reparented to the subreaper")
        print(sleeper, flush=True)
        print(kill_descendants(timeout=5), flush=True)
        print(os.path.exists(f"/proc/{sleeper}"), flush=True)
    """)
    try:
        out, _ = helper.communicate(timeout=30)
    finally:
        helper.kill()
        helper.wait(10)
    assert helper.returncode == 0, out
    sleeper, killed, still_there = out.split()
    assert killed == "1", "kill_descendants should have killed the adopted sleep, and only it"
    assert still_there == "False", "the killed sleep was not reaped"
    assert not running(int(sleeper))


def test_become_subreaper_answers_on_every_platform():
    helper = subprocess.run([sys.executable, "-c",
                             "from shared.processes import become_subreaper; print(become_subreaper())"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    expected = "True" if sys.platform.startswith("linux") else "False"
    assert helper.stdout.strip() == expected, helper.stderr


def test_kill_descendants_with_none_returns_zero():
    helper = subprocess.run([sys.executable, "-c",
                             "from shared.processes import kill_descendants; print(kill_descendants())"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert helper.stdout.strip() == "0", helper.stderr


def test_wait_until_returns_once_the_condition_holds():
    answers = iter([False, 0, "", "yes"])
    wait_until(lambda: next(answers), 10, "the fourth answer", interval=0.001)
    assert next(answers, "exhausted") == "exhausted"


def test_wait_until_names_what_it_waited_for_when_time_runs_out():
    with pytest.raises(TimeoutError, match=r"gave up after 0\.05 s waiting for the moon"):
        wait_until(lambda: False, 0.05, "the moon")


def test_wait_until_gives_up_early_on_a_problem():
    polls = []
    with pytest.raises(RuntimeError, match="while waiting for the server: it exited"):
        wait_until(lambda: polls.append(1), 30, "the server",
                   problem=lambda: "it exited" if len(polls) >= 3 else None)
    assert len(polls) == 3


def test_a_logged_child_that_exits_fails_a_wait_at_once_with_its_log():
    child = LoggedChild([sys.executable, "-c", "print('no config file'); raise SystemExit(3)"],
                        name="demo server")
    try:
        with pytest.raises(RuntimeError, match=r"(?s)demo server exited with code 3.*no config file"):
            child.wait_until(lambda: False, 30, "the demo server to answer")
    finally:
        child.stop()
    assert not child.folder.exists(), "stop() removes the log folder it made"
