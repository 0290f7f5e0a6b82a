"""Lesson 07, section 5: a crowd at a real dramatiq app, with and without load shedding."""

from __future__ import annotations

import pytest

from shared.app import create_app, state
from shared.modes.dramatiq.broker import namespace_keys
from shared.production.backpressure import close_apps, crowd_run, freeze, plot_backlogs, warm_up
from shared.redis_server import redis_url
from shared.settings import Settings

SIGNUPS, CLIENTS = 80, 4


@pytest.fixture
def apps(fast_sink):
    """An app with no bound and one with a 1 s bound, one slow avatar worker thread each; and
    a function that closes one (once: the fixture closes those the test did not)."""
    settings = Settings(smtp_host=fast_sink.host, smtp_port=fast_sink.port, avatar_canvas=3000)
    made = [create_app("dramatiq", settings=settings, redis_url=redis_url(), workers=1, threads=1,
                       max_backlog_seconds=bound) for bound in (0, 1)]
    closed: list = []

    def close(app) -> None:
        if app not in closed:
            closed.append(app)
            state(app).close(timeout=0)

    yield made, close
    for app in made:
        close(app)


def test_without_a_bound_every_signup_is_taken_and_with_one_some_are_refused(apps):
    (unbounded_app, bounded_app), close = apps
    for app in (unbounded_app, bounded_app):
        state(app).runner.wait_ready(60)
    unbounded = crowd_run(unbounded_app, "no bound", SIGNUPS, CLIENTS)
    close(unbounded_app)  # its workers stop competing with the next run
    warm_up(bounded_app, 2)  # the workers' pace is known before the crowd
    assert state(bounded_app).store.counts()["done"] == 4  # 2 signups, an email and an avatar each
    bounded = crowd_run(bounded_app, "bound 1 s", SIGNUPS, CLIENTS)
    assert unbounded.answered(202) == SIGNUPS and unbounded.bound == 0
    assert bounded.answered(503) > 0 and bounded.bound == 1
    assert bounded.answered(202) + bounded.answered(503) == SIGNUPS
    # the store's backlog grew far past what the bounded app let in
    assert unbounded.watch.peak("unfinished") > 2 * bounded.watch.peak("unfinished")
    for run in (unbounded, bounded):
        assert len(run.watch.samples) >= 3, run.watch
        for sample in run.watch.samples:  # one worker thread: it holds at most 2 (its prefetch)
            assert sample.value("held") <= 2, sample
            # the list never shows more than the store (give or take signups between the reads)
            assert sample.value("listed") <= sample.value("unfinished") + 2 * CLIENTS, sample
        times, work = run.series("seconds")
        assert times == sorted(times) and min(work) >= 0
    fig = plot_backlogs([unbounded, bounded], title="test")
    assert len(fig.axes) == 2
    runners = [state(app).runner for app in (unbounded_app, bounded_app)]
    close(bounded_app)
    assert not [key for runner in runners
                for key in namespace_keys(runner.settings.redis_url, runner.broker_config.namespace)]


def test_crowd_run_needs_a_dramatiq_app():
    app = create_app("bare")
    try:
        with pytest.raises(TypeError, match="needs a dramatiq app"):
            crowd_run(app, "bare", 1, 1)
    finally:
        state(app).close()


def test_the_work_verdict_judges_every_sample_the_plot_draws_against_twice_the_bound():
    from types import SimpleNamespace  # noqa: PLC0415

    from shared.production.backpressure import HELD, NEAR, PAST, CrowdRun  # noqa: PLC0415

    def run(work: list[float]) -> CrowdRun:
        samples = [SimpleNamespace(t=10.0 + i, value=lambda name, w=w: w)
                   for i, w in enumerate(work)]
        return CrowdRun("r", 1.0, SimpleNamespace(started=10.0, wall=len(work) - 1.0),
                        SimpleNamespace(samples=samples))

    assert run([0.5, 1.2, NEAR, 1.1]).work_verdict() == HELD
    assert run([0.5, 1.2, NEAR + 0.1, 1.1]).work_verdict() == PAST  # one sample past is enough
    assert run([0.2]).work_verdict() == HELD


def test_freeze_stops_the_workers_and_close_apps_lets_them_go_and_closes_every_app(fast_sink):
    settings = Settings(smtp_host=fast_sink.host, smtp_port=fast_sink.port)
    made = [create_app("dramatiq", settings=settings, redis_url=redis_url(), workers=1, threads=1)
            for _ in range(2)]
    runners = [state(app).runner for app in made]
    try:
        for runner in runners:
            runner.wait_ready(60)
        freeze(made[0])
        assert all(p.status() == "stopped" for p in runners[0].worker_processes())
        assert all(p.status() != "stopped" for p in runners[1].worker_processes())
    finally:
        close_apps(*made)
    assert not any(group.running for runner in runners for group in runner.groups)
    assert not [key for runner in runners
                for key in namespace_keys(runner.settings.redis_url, runner.broker_config.namespace)]
