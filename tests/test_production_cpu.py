"""Lesson 07, section 6: bursts at the bare handler and at dramatiq apps of two priorities."""

from __future__ import annotations

import os

import psutil
import pytest

from shared.app import create_app, state
from shared.modes.dramatiq.niceness import priority_of
from shared.production.cpu import Burst, Verdict, compare, main, make_polite, plot_ratios, ratios
from shared.redis_server import redis_url
from shared.settings import Settings


def test_the_verdict_pairs_the_trials_and_counts_the_wins_with_a_sign_test():
    clear = Verdict(slower=[3.0] * 10, faster=[1.5, 2.9, 1.4, 2.0, 1.0, 2.5, 2.2, 1.1, 2.8, 1.9],
                    name="nice 19")
    assert clear.wins == 10 and clear.p_value == pytest.approx(1 / 1024) and clear.clear
    assert str(clear).startswith("nice 19 was faster in 10 of 10 trials")
    assert "more wins than chance would give" in str(clear)
    # one-sided: five wins of five is one chance in 32, four of five is not enough
    assert Verdict(slower=[2.0] * 5, faster=[1.0] * 5).clear
    assert not Verdict(slower=[2.0] * 5, faster=[1.0] * 4 + [3.0]).clear
    # paired: the trials' common swings cancel, a spread wider than the gap does not hide it
    swinging = Verdict(slower=[3.1, 1.1, 5.1, 2.1, 4.1, 1.6, 3.6, 2.6, 4.6, 1.3],
                       faster=[3.0, 1.0, 5.0, 2.0, 4.0, 1.5, 3.5, 2.5, 4.5, 1.2], name="b")
    assert swinging.clear and "faster by 0.1x the bare p50" in str(swinging)
    noisy = Verdict(slower=[3.0, 1.0, 2.0, 2.2], faster=[1.5, 2.5, 1.8, 2.4], name="nice 19")
    assert noisy.wins == 2 and not noisy.clear and "cannot tell whether nice 19 is faster" in str(noisy)
    slower = Verdict(slower=[1.0, 1.0, 1.0], faster=[2.0, 2.0, 2.0], name="nice 19")
    assert slower.wins == 0 and "slower by 1.0x" in str(slower) and not slower.clear  # 3 trials
    tied = Verdict(slower=[1.0, 1.0, 1.0], faster=[0.99, 1.02, 1.0], name="nice 19")
    assert "difference: under 0.05x the bare p50, either way" in str(tied)  # not "by 0.0x"
    with pytest.raises(ValueError):
        _ = Verdict([1.0], [1.0, 2.0]).differences  # unpaired


def test_ratios_pair_each_trial_with_the_same_trials_baseline():
    bursts = {"bare": [Burst(0.01, 0.0, True), Burst(0.02, 0.0, True)],
              "other": [Burst(0.03, 1.0, True), Burst(0.02, 1.0, True)]}
    assert ratios(bursts, over="bare") == {"other": [3.0, 1.0]}


def test_make_polite_lowers_a_running_apps_worker_groups(fast_sink):
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=1)
    runner = state(app).runner
    try:
        runner.wait_ready(60)
        assert all(priority_of(p.pid)[0] == 0 for p in runner.worker_processes())
        make_polite(app, 19)
        processes = runner.worker_processes() + [psutil.Process(pid) for pid in runner.pids]
        assert processes and all(priority_of(p.pid)[0] == 19 for p in processes)
        assert "worker groups at nice 19" in runner.describe()
    finally:
        state(app).close(timeout=0)


def test_the_command_line_prints_the_table_and_both_verdicts(capsys):
    assert main(["--trials", "2", "--signups", "4", "--clients", "2", "--warm", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 trials of 4 signups from 2 clients" in out
    assert "dramatiq, workers at nice 19" in out and "dramatiq, workers stopped" in out
    assert "nice 19 was faster in" in out and "workers stopped was faster in" in out
    assert out.count("of 2 trials; the median per-trial difference") == 2


def test_compare_measures_every_app_in_every_trial_and_waits_for_the_jobs(fast_sink):
    settings = Settings(smtp_host=fast_sink.host, smtp_port=fast_sink.port, avatar_canvas=300)
    apps = {"bare": create_app("bare", settings=settings),
            "polite": create_app("dramatiq", settings=settings, redis_url=redis_url(),
                                 workers=1, threads=2, nice=19)}
    try:
        polite = state(apps["polite"]).runner
        polite.wait_ready(60)
        assert all(priority_of(p.pid)[0] == 19 for p in polite.worker_processes())
        bursts = compare(apps, trials=2, signups=6, clients=3)
        assert {name: len(runs) for name, runs in bursts.items()} == {"bare": 2, "polite": 2}
        assert all(b.p50 > 0 and b.drain >= 0 for runs in bursts.values() for b in runs)
        assert state(apps["polite"]).runner.wait(60)  # a busy machine may leave some after a burst
        counts = state(apps["polite"]).store.counts()
        assert counts["done"] == 2 * 2 * 6 and counts["queued"] == counts["running"] == 0, counts
        fig = plot_ratios(ratios(bursts, over="bare"), title="test")
        assert len(fig.axes) == 1
    finally:
        for app in apps.values():
            state(app).close(timeout=10)


def test_a_nice_process_in_its_own_session_gives_way_once_its_autogroup_is_lowered_too():
    from shared.modes.dramatiq.niceness import autogroups_on  # noqa: PLC0415
    from shared.production.cpu import nice_share  # noqa: PLC0415

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("two busy loops share one core only where the OS can pin them (Linux)")
    lowered = nice_share(autogroup=True, seconds=0.5)
    assert lowered < 0.25  # nice 19 against nice 0 on one core: a few percent
    if autogroups_on():  # nice alone does not rank across sessions: about half on a quiet
        # machine; other programs on the core move it, so the test compares the two shares
        alone = nice_share(autogroup=False, seconds=0.5)
        assert alone > 2 * lowered, (alone, lowered)


def test_nice_shares_measures_both_pairs_at_once_each_on_its_own_core():
    from shared.modes.dramatiq.niceness import autogroups_on  # noqa: PLC0415
    from shared.production.cpu import nice_shares  # noqa: PLC0415

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("two busy loops share one core only where the OS can pin them (Linux)")
    alone, lowered = nice_shares(seconds=0.5)  # one pair per core, at once (no timing asserted)
    assert lowered < 0.25
    if autogroups_on():  # about half against a few percent; compared, not bounded: load moves both
        assert alone > 2 * lowered, (alone, lowered)
