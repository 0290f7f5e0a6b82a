"""shared.production.shutdown: real dramatiq worker groups stopped the ways deploys stop them.

One module fixture runs every shutdown at once (as lesson 07 does), each with its own
worker groups, SMTP sink and Redis namespace; the tests read the results. Counts only,
with wide margins: no timing is asserted, beyond what the broker guarantees (a dead
worker's message never comes back before its heartbeat timeout).
"""

from __future__ import annotations

import os
import signal

import pytest

from functools import partial

from shared.production.shutdown import (LAB_HEARTBEAT_TIMEOUT, LAB_MAINTENANCE_CHANCE, Interruption, Lab,
                                        Rollout, interrupt, log_events, run_parallel, wait_logged)

KILLED = "Killing worker process..."


def stop_master(group):
    os.kill(group.pid, signal.SIGTERM)


def stop_process_group(group):
    os.killpg(group.pid, signal.SIGTERM)


def stop_master_twice(group):
    os.kill(group.pid, signal.SIGTERM)
    wait_logged(group, "Stopping worker process...", times=group.processes)
    os.kill(group.pid, signal.SIGTERM)


def rolling_restart(redis_url: str) -> tuple[Rollout, int]:
    with Lab(redis_url, email_delay=0.05) as lab:
        old = lab.start_group("old")
        lab.keep_sending(every=0.1)
        lab.start_group("new")
        os.kill(old.pid, signal.SIGTERM)
        stopped_at = lab.now()
        code = lab.wait_exit(old)
        lab.stop_sending()
        lab.wait_done()
        rollout = lab.rollout({"SIGTERM to the old group": stopped_at}, code)
    return rollout, lab.leftovers()


@pytest.fixture(scope="module")
def runs(redis_url):
    lab_interrupt = partial(interrupt, redis_url, heartbeat_timeout=LAB_HEARTBEAT_TIMEOUT,
                            maintenance_chance=LAB_MAINTENANCE_CHANCE)
    return run_parallel(
        master=lambda: lab_interrupt(stop_master, jobs=8, email_delay=0.3),
        group=lambda: lab_interrupt(stop_process_group, jobs=8, email_delay=0.3, processes=2),
        twice=lambda: lab_interrupt(stop_master_twice, jobs=6, email_delay=0.4),
        long_job=lambda: lab_interrupt(stop_master, jobs=1, threads=1, email_delay=1.5, shutdown_ms=100),
        rolling=lambda: rolling_restart(redis_url))


def killed(run: Interruption) -> int:
    return sum(KILLED in texts for texts in run.by_process().values())


def test_sigterm_to_the_main_process_finishes_running_jobs_and_requeues_the_rest(runs):
    run = runs["master"]
    assert run.exit_code == 0, run.events
    assert run.at_exit.running == 0 and run.at_exit.held == {}, "nothing left mid-run or held"
    assert run.running_at_signal and not run.running_at_signal & set(run.rerun_at)
    assert killed(run) == 0
    assert (run.tally.lost, run.tally.ran_twice) == (0, 0)


def test_a_second_sigterm_kills_every_worker_and_leaves_its_messages_held(runs):
    run = runs["twice"]
    assert killed(run) == len(run.worker_pids) == 1, run.by_process()
    assert run.exit_code == 1
    assert len(run.at_exit.held) == 1, "the dead worker still holds messages in its acks set"
    assert run.tally.lost == 0
    assert run.tally.ran_twice >= 1 and run.tally.ran_twice == run.at_exit.running, "exactly the cut-off jobs"


def test_sigterm_to_the_process_group_loses_nothing_whichever_way_the_race_goes(runs):
    run = runs["group"]
    assert run.tally.lost == 0
    assert 0 <= killed(run) <= 2
    if killed(run):
        assert run.exit_code == 1 and run.at_exit.held, "a killed worker leaves its messages held"
    else:
        assert run.exit_code == 0 and run.tally.ran_twice == 0 and not run.at_exit.held
    assert run.tally.ran_twice == run.at_exit.running, "exactly the jobs cut off mid-run ran again"


def test_a_job_longer_than_the_shutdown_timeout_is_abandoned_silently_and_runs_again(runs):
    run = runs["long_job"]
    assert run.exit_code == 0
    assert run.texts("WARNING") == [] and run.texts("ERROR") == [], run.events
    assert "Worker has been shut down." in run.texts()
    [(worker, held)] = run.at_exit.held.items()
    assert held == 1 and run.at_exit.on_queue == 0
    beat = run.heartbeats[worker]
    assert beat is not None
    [rerun] = run.rerun_at.values()
    # the broker's guarantee, not a timing: maintenance requeues only an expired heartbeat's messages
    assert run.heartbeat_timeout == LAB_HEARTBEAT_TIMEOUT
    assert rerun - beat >= LAB_HEARTBEAT_TIMEOUT / 1000 - 0.05
    assert (run.tally.lost, run.tally.ran_twice) == (0, 1)


def test_a_rolling_restart_loses_and_repeats_nothing(runs):
    rollout, left = runs["rolling"]
    assert rollout.old_exit_code == 0
    assert (rollout.tally.lost, rollout.tally.ran_twice, rollout.tally.emailed_twice) == (0, 0, 0)
    assert {"old", "new"} <= set(rollout.ran_by.values())
    assert left == 0


def test_nothing_outlives_the_experiments(runs):
    assert [run.left for name, run in runs.items() if name != "rolling"] == [0, 0, 0, 0]


def test_log_events_parse_dramatiq_lines_and_skip_the_rest():
    text = ("[2026-12-02 18:20:01,123] [PID 41] [MainThread] [dramatiq.WorkerProcess(0)] [INFO] "
            "Stopping worker process...\nTraceback (most recent call last):\n")
    [event] = log_events(text)
    assert (event.pid, event.source, event.level, event.text) == (
        41, "dramatiq.WorkerProcess(0)", "INFO", "Stopping worker process...")


def test_the_main_process_waits_for_its_log_thread_s_poll():
    """Section 4's reading of dramatiq/cli.py: join returns when a worker exits, but the log thread
    also reads the main process's own log pipe (never closed), so it sees its stop event only when
    its one-second wait times out."""
    import inspect

    from dramatiq import cli

    main = inspect.getsource(cli.main)
    assert "[parent_read_pipe, *worker_pipes, *fork_pipes]" in main
    assert "proc.join(timeout=1)" in main
    assert main.index("log_watcher_stop_event.set()") < main.index("log_watcher.join()")
    watch = inspect.getsource(cli.watch_logs)
    assert "multiprocessing.connection.wait(pipes, timeout=1)" in watch
    assert "while pipes and not stop.is_set()" in watch
