"""Lesson 07, section 2: what a Redis broker keeps through kill -9, on real servers."""

from __future__ import annotations

import threading

import matplotlib.pyplot as plt
import pytest

from shared.production.persistence import (ALWAYS, DEFAULTS, EVERYSEC, OFF, SETTINGS, CrashRun,
                                           EnqueueCost, cost_lines, crash, enqueue_costs,
                                           persistence_leftovers, plot_persistence)
from shared.redis_server import EmbeddedRedis
from shared.serve import describe_persistence, persistence_line

KILL_AFTER = 60


@pytest.fixture(scope="module")
def runs() -> dict[str, CrashRun]:
    return {setting.name: crash(setting, kill_after=KILL_AFTER, senders=3, timeout=20)
            for setting in SETTINGS}


def test_without_persistence_every_acknowledged_message_is_lost(runs):
    run = runs[OFF.name]
    assert run.acknowledged >= KILL_AFTER
    assert run.kept == 0 and run.lost == run.acknowledged
    assert run.live == {"appendonly": "no", "appendfsync": "everysec", "save": ""}
    assert "all of them: nothing on disk to load" in run.verdict()


def test_redis_defaults_take_snapshots_and_a_short_run_reaches_none(runs):
    run = runs[DEFAULTS.name]
    assert isinstance(run.live, dict) and run.live["save"] and run.live["appendonly"] == "no"
    assert run.kept == 0 and run.acknowledged >= KILL_AFTER


@pytest.mark.parametrize("setting", [EVERYSEC, ALWAYS], ids=["everysec", "always"])
def test_an_append_only_file_keeps_what_it_promises_through_kill_9(runs, setting):
    run = runs[setting.name]
    assert isinstance(run.live, dict) and run.live["appendonly"] == "yes"
    assert run.live["appendfsync"] == setting.config["appendfsync"]
    assert run.acknowledged >= KILL_AFTER
    assert run.kept_its_promise, f"lost {run.lost} of {run.acknowledged} acknowledged messages"
    assert run.verdict().endswith("kept its promise")


def test_a_run_leaves_nothing_behind(runs):
    assert persistence_leftovers() == {"servers": 0, "sender threads": 0, "data directories": 0}
    assert not [t for t in threading.enumerate() if t.name.startswith("persistence-sender")]


def test_the_verdict_says_when_a_promise_was_broken():
    broken = CrashRun(EVERYSEC, {}, acknowledged=100, kept=90)
    assert not broken.kept_its_promise and "BROKE its promise" in broken.verdict()
    within = CrashRun(EVERYSEC, {}, acknowledged=100, kept=99)
    assert within.kept_its_promise


def test_enqueue_costs_are_measured_on_every_setting_against_the_first():
    costs = enqueue_costs((OFF, ALWAYS), samples=20)
    assert [cost.persistence for cost in costs] == [OFF, ALWAYS]
    assert all(cost.seconds > 0 and cost.samples == 20 for cost in costs)
    lines = cost_lines(costs)
    assert lines[0].endswith("1.0x as long as off") and "per enqueue" in lines[1]
    assert persistence_leftovers()["servers"] == 0


def test_the_plot_has_both_panels(runs):
    costs = [EnqueueCost(setting, 0.001 * (n + 1), 10) for n, setting in enumerate(SETTINGS)]
    figure = plot_persistence(list(runs.values()), costs)
    assert len(figure.axes) == 2
    plt.close(figure)


def test_make_serve_states_the_persistence_it_reads_from_the_server():
    with EmbeddedRedis() as plain:
        assert persistence_line(plain.url) == "none (appendonly no, save '')"
    with EmbeddedRedis(config=EVERYSEC.config) as aof:
        assert persistence_line(aof.url) == ("append-only file (appendonly yes, "
                                             "appendfsync everysec, save '')")
    assert describe_persistence({"appendonly": "no", "save": "3600 1"}).startswith("snapshots")
    assert describe_persistence("ResponseError: unknown command").startswith("unknown")


def test_the_banner_of_a_redis_mode_states_its_persistence(served):
    app = served("--mode", "redis-queue", "--workers", "1", "--email-delay", "0.1")
    try:
        app.wait_line(r"^Ctrl-C stops everything")
        url = app.wait_line(r"^redis: +(\S+)")[1]
        line = app.wait_line(r"^ +persistence: (.+)$")
        assert line[1] == persistence_line(url), app.output  # what the server itself says
        assert line[1].startswith(("none (", "snapshots (", "append-only file (")), app.output
    finally:
        assert app.stop() == 0
