"""Lesson 05's designs on real Dramatiq workers, real Redis and a real SMTP sink.

Orders and shares are asserted with wide margins; every wait has a deadline
(run_design's ``timeout``) and names what it waited for.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from shared.priorities import ActorPlan, Design, DesignError, WorkerGroup, WorkersFailed, run_design
from shared.priorities.report import comparison_table
from shared.redis_server import redis_url
from shared.smtp_sink import SmtpSink

BACKLOG = 30
SEPARATE = Design("separate queues", reset=ActorPlan("urgent", 0),
                  newsletter=ActorPlan("bulk", 10),
                  workers=(WorkerGroup(("urgent",)), WorkerGroup(("bulk",))))


@pytest.fixture
def sink20():
    """A mail provider taking 20 ms an email: a backlog of 30 lasts well over a worker's poll."""
    with SmtpSink(delay=0.02) as running:
        yield running


def run(design, sink, **options):
    options = {"newsletter": BACKLOG, "timeout": 60.0, **options}
    return run_design(design, smtp_host=sink.host, smtp_port=sink.port, **options)


def namespaced_keys() -> set[bytes]:
    client = redis.Redis.from_url(redis_url())
    try:
        return set(client.scan_iter(match="lesson05-*", count=1000))
    finally:
        client.close()


# -- designs are checked before anything runs ----------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda: ActorPlan("has space"), "not a queue name"),
    (lambda: ActorPlan("emails", priority="high"), "whole number"),
    (lambda: WorkerGroup(("emails",), threads=0), "threads must be"),
    (lambda: WorkerGroup((), threads=1), "at least one queue"),
    (lambda: WorkerGroup(("emails",), prefetch=0), "prefetch must be"),
    (lambda: Design("x", reset=ActorPlan("urgent")), "no worker group reads queue 'urgent'"),
    (lambda: Design("x", workers=(WorkerGroup(("emails", "spare")),)), "'spare'"),
    (lambda: Design(""), "short name"),
])
def test_bad_designs_say_what_to_change(make, words):
    with pytest.raises(DesignError, match=words):
        make()


def test_a_design_travels_as_json():
    assert Design.from_json(SEPARATE.to_json()) == SEPARATE
    assert SEPARATE.threads == 2
    assert "worker group 2: 1 thread on bulk (prefetch 2)" in SEPARATE.describe()


def test_the_worker_module_needs_its_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFER_")}
    done = subprocess.run([sys.executable, "-m", "shared.priorities.worker", "--queues", "x"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DEFER_PRIORITIES_NAMESPACE" in done.stderr and "run_design()" in done.stderr


# -- what priority does, measured ----------------------------------------------

def test_default_prefetch_the_reset_waits_for_the_backlog(sink20):
    outcome = run(Design("one queue"), sink20)
    assert len(outcome.jobs) == BACKLOG + 1 and not outcome.failed
    assert len(sink20.inbox) == BACKLOG + 1
    # prefetch 2 with one thread: it can overtake at most the one copy held
    assert len(outcome.ran_before_reset) >= len(outcome.waiting_when_reset_sent) - 1
    assert outcome.order[-2:].count("R") == 1


def test_prefetch_holding_the_backlog_lets_the_reset_overtake(sink20):
    big = Design("big prefetch", workers=(WorkerGroup(prefetch=BACKLOG + 10),))
    outcome = run(big, sink20)
    assert outcome.share_waited_for < 0.3, outcome.order
    assert outcome.order.index("R") < BACKLOG // 2


def test_without_priority_a_big_prefetch_changes_nothing(sink20):
    same = Design("no priority", reset=ActorPlan("emails", 0), newsletter=ActorPlan("emails", 0),
                  workers=(WorkerGroup(prefetch=BACKLOG + 10),))
    outcome = run(same, sink20)
    assert outcome.order[-1] == "R", outcome.order


def test_all_sent_before_the_worker_starts_the_first_fetch_is_sorted(sink20):
    big = Design("big prefetch", workers=(WorkerGroup(prefetch=BACKLOG + 10),))
    outcome = run(big, sink20, reset_after=0)
    assert outcome.order[0] == "R", outcome.order
    small = run(Design("default prefetch"), sink20, reset_after=0)
    assert small.order[:2] == ["N1", "N2"], small.order


def test_separate_queues_meet_the_target_and_leave_the_urgent_worker_idle():
    # 20 ms an email: the shared queue's backlog (~0.3 s) dwarfs an idle worker's poll (<= 0.1 s)
    with SmtpSink(delay=0.02) as sink:
        shared_queue = run(Design("one queue, 2 threads", workers=(WorkerGroup(threads=2),)), sink)
        separate = run(SEPARATE, sink)
    assert {job.group for job in separate.jobs if job.kind == "reset"} == {0}
    assert {job.group for job in separate.newsletter} == {1}
    assert separate.reset_wait * 2 < shared_queue.reset_wait, (separate.reset_wait, shared_queue.reset_wait)
    assert separate.busy_share(0) * 3 < separate.busy_share(1)
    table = comparison_table([shared_queue, separate], target=0.5)
    assert table.splitlines()[0].startswith("design") and len(table.splitlines()) == 3


def test_the_dramatiq_command_runs_the_same_design(fast_sink):
    outcome = run(SEPARATE, fast_sink, newsletter=10, cli=True)
    assert len(outcome.jobs) == 11 and not outcome.failed
    assert {job.group for job in outcome.jobs if job.kind == "reset"} == {0}


def test_a_failed_email_is_recorded_not_retried(closed_port):
    """No provider at all: every attempt is refused at once, recorded, and not tried again."""
    outcome = run_design(Design("dead provider"), newsletter=3, smtp_host="127.0.0.1",
                         smtp_port=closed_port, timeout=60)
    assert len(outcome.jobs) == 4
    assert all(job.error for job in outcome.jobs)


def test_a_deadline_names_what_it_waited_for_and_cleans_up():
    before = namespaced_keys()
    with SmtpSink(delay=0.5) as slow:  # 21 emails, one at a time: 10 s, far past the deadline
        with pytest.raises(WorkersFailed, match="all 21 emails"):
            run(Design("too slow"), slow, newsletter=20, timeout=1.5)
    assert namespaced_keys() <= before


@pytest.mark.parametrize("bad, words", [({"newsletter": 0}, "newsletter"),
                                        ({"reset_after": 99}, "reset_after")])
def test_bad_run_options(fast_sink, bad, words):
    with pytest.raises(ValueError, match=words):
        run(Design("x"), fast_sink, **bad)


# -- what a worker holds, measured ------------------------------------------------

def test_four_threads_on_a_deep_backlog_overtake_only_copies_the_worker_holds(sink20):
    """Prefetch 2 x 4 = 8 counts the running copies too, and the reset email takes a place
    itself: it overtakes at most 7 held copies (3 while every thread stays busy, the usual
    case), never one of the ~90 still in Redis."""
    four = Design("one queue, 4 threads", workers=(WorkerGroup(threads=4),))
    outcome = run(four, sink20, newsletter=100)
    overtaken = len(outcome.waiting_when_reset_sent) - len(outcome.ran_before_reset)
    assert overtaken <= 7, outcome.order
    assert len(outcome.held_when_reset_fetched) <= 7
    assert outcome.most_held(0) <= 8


def test_every_email_is_fetched_before_it_starts_and_nothing_is_left(sink20):
    outcome = run(Design("one queue, prefetch 10", workers=(WorkerGroup(prefetch=10),)), sink20)
    assert all(job.sent <= job.fetched <= job.started for job in outcome.jobs)
    assert outcome.most_held(0) == 10  # the first fetch takes a whole prefetch of the backlog
    assert outcome.reset.in_redis > outcome.reset.held  # it waited in Redis, where no priority acts
    assert outcome.keys_left == 0


@pytest.mark.skipif(not os.environ.get("RABBITMQ_URL"), reason="set RABBITMQ_URL to run it")
def test_rabbitmq_sorts_in_the_broker_and_leaves_no_queue():
    pytest.importorskip("pika", reason="pip install 'dramatiq[rabbitmq]'")
    from shared.priorities.rabbitmq import delivery_order, queues_left

    url = os.environ["RABBITMQ_URL"]
    delivery = delivery_order(url, backlog=10)
    assert delivery.order[0] == "R" and sorted(delivery.order) == sorted(
        ["R", *(f"N{n}" for n in range(1, 11))])
    assert [name.rsplit(".", 1)[-1] for name in delivery.queues[1:]] == ["DQ", "XQ"]
    assert queues_left(url, delivery.queues) == []


def _outcome(waits: list[float]):
    """A made-up Outcome: copies sent at 0, the reset at 0.1 s waiting ``waits[0]``."""
    from shared.priorities.run import Job, Outcome

    copies = [Job(kind="newsletter", number=n, sent=0.0, fetched=0.01, started=0.05 * n,
                  finished=0.05 * n + 0.05, worker="1/1", group=0) for n in range(1, 5)]
    reset = Job(kind="reset", number=0, sent=0.1, fetched=0.1 + waits[0] / 2,
                started=0.1 + waits[0], finished=0.15 + waits[0], worker="1/1", group=0)
    jobs = tuple(sorted([*copies, reset], key=lambda job: job.started))
    return Outcome(design=Design("made up"), newsletter_size=4, jobs=jobs, started=0.0,
                   ended=max(job.finished for job in jobs))


def test_the_comparison_figure_draws_the_target_only_beside_the_reset_waits():
    import matplotlib.pyplot as plt

    from shared.priorities.plots import plot_reset_waits
    fig = plot_reset_waits([_outcome([0.03]), _outcome([2.0])], labels=["a", "b"], target=0.5)
    left, right = fig.axes
    assert len(left.get_lines()) == 1 and not right.get_lines()  # the target line
    assert {"30 ms", "100 ms", "300 ms", "1.00 s"} <= {t.get_text() for t in left.get_xticklabels()}
    plt.close(fig)


def test_the_timeline_draws_the_reset_email_taller_and_apart():
    import matplotlib.pyplot as plt

    from shared.priorities.plots import RESET_HEIGHT, plot_runs
    fig = plot_runs([_outcome([0.2])], target=0.5)
    ax = fig.axes[0]
    heights = {round(patch.get_height(), 3) for patch in ax.patches}
    assert heights == {1.0, RESET_HEIGHT}
    assert [tick.get_text() for tick in ax.get_yticklabels()][-1] == "reset email"
    assert ax.get_ylabel() == "emails, in the order sent"
    plt.close(fig)
