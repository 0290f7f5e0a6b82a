"""Lesson 07, section 7: the dramatiq mode's Prometheus pages, read and checked, on real parts.

Real worker groups (the ``dramatiq`` mode with ``metrics=1``), a real SMTP server
and Redis. Counts are compared with the store's own, never timed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis
from dramatiq import Message

from shared.app import create_app, state
from shared.modes.dramatiq.metrics import HOST, MeteredGroup
from shared.production import metrics
from shared.redis_server import redis_url
from shared.retries.flaky_smtp import FlakySmtp

DEADLINE = 30.0


@pytest.fixture
def metered():
    """An app in the dramatiq mode with metrics on, its SMTP server, and what must be gone after."""
    with FlakySmtp(delay=0.01) as smtp:
        app = create_app("dramatiq", redis_url=redis_url(), smtp_host=smtp.host,
                         smtp_port=smtp.port, workers=1, metrics=1, max_retries=2, min_backoff=10,
                         max_backoff=50, heartbeat_timeout=1000)
        mode = metrics.dramatiq_mode(app)
        try:
            mode.wait_ready(DEADLINE)
            for url in mode.metrics_urls.values():
                metrics.wait_metrics(url, DEADLINE)
            yield app, mode, smtp
        finally:
            folders = [group.metrics_folder for group in mode.groups
                       if isinstance(group, MeteredGroup)]
            processes = [psutil.Process(pid) for pid in mode.pids]
            processes += [c for p in processes if p.is_running() for c in p.children(recursive=True)]
            namespace = mode.broker_config.namespace
            state(app).close(timeout=DEADLINE)
            assert not [f for f in folders if f.exists()], "metric folders left after close"
            assert not [p for p in processes if p.is_running()], "processes left after close"
            assert metrics.keys_left(redis_url(), namespace) == 0


def test_each_group_serves_its_own_page_on_loopback_only(metered):
    app, mode, _ = metered
    assert set(mode.metrics_urls) == {"email", "avatars"}
    assert len(set(mode.metrics_urls.values())) == 2, "two groups need two ports"
    for group in mode.groups:
        listening = {c.laddr.ip for p in psutil.Process(group.pid).children(recursive=True)
                     for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        assert listening == {HOST}, (group.name, listening)
        assert len(group.worker_processes()) == group.processes, \
            "the exposition server was taken for a worker process"


def test_the_counters_match_the_stores_count_and_retries_count_twice(metered):
    app, mode, smtp = metered
    smtp.refuse_share = 0.5
    ids = metrics.send_emails(app, [f"u{i}@example.com" for i in range(20)])
    assert mode.wait(DEADLINE), "the emails did not finish in time"
    page = metrics.scrape(mode.metrics_urls["email"], by_label=True)
    mine = metrics.own_counts(app, ids)
    assert mine.retries > 0, "a provider refusing half the attempts caused no retry"
    assert page["dramatiq_messages_total{email}"] == mine.attempts
    assert page.get("dramatiq_message_rejects_total{email}", 0) == mine.failed
    # Each retry is enqueued twice (on email.DQ, then back on email): counted under both.
    assert page["dramatiq_message_retries_total{email.DQ}"] == mine.retries
    assert page["dramatiq_message_retries_total{email}"] == mine.retries
    assert metrics.scrape(mode.metrics_urls["email"], queue="email")[metrics.RETRIES] == mine.retries
    # The page is MultiProcessCollector over the folder: the notebook's read of it agrees.
    email = mode.groups[0]
    assert isinstance(email, MeteredGroup)
    files = metrics.read_folder(email.metrics_folder, queue="email")
    live = metrics.scrape(mode.metrics_urls["email"], queue="email")
    for name in (metrics.PROCESSED, metrics.RETRIES, metrics.DEAD, metrics.DURATION_COUNT):
        assert files.get(name, 0) == live.get(name, 0), name


def test_a_recorder_scrapes_during_a_run_and_plots_four_panels(metered):
    app, mode, _ = metered
    with metrics.Recorder(mode.metrics_urls["email"], queue="email", interval=0.02) as recorder:
        metrics.send_emails(app, [f"r{i}@example.com" for i in range(10)])
        assert mode.wait(DEADLINE)
    assert len(recorder.samples) >= 2 and len(recorder.times) == len(recorder.samples)
    assert recorder.series(metrics.PROCESSED)[-1] == 10
    assert recorder.times == sorted(recorder.times)
    fig = metrics.plot_run(recorder, "test")
    assert len(fig.axes) == 4
    import matplotlib.pyplot as plt  # noqa: PLC0415
    plt.close(fig)


def test_a_killed_worker_leaves_a_stale_gauge_unless_the_files_are_wiped(metered):
    app, mode, smtp = metered
    email = mode.groups[0]
    assert isinstance(email, MeteredGroup)
    smtp.delay = 0.5
    for wipe, restarts in ((False, 1), (True, 2)):
        email.wipe_on_start = wipe
        metrics.send_emails(app, [f"k{restarts}-{i}@example.com" for i in range(2)])
        victim = mode.wait_busy_worker(smtp.port, timeout=DEADLINE)
        victim.send_signal(signal.SIGKILL)
        mode.wait_restarts(restarts, DEADLINE)
        if not wipe:  # the group is down and nothing runs: its files still say "in progress"
            assert metrics.read_folder(email.metrics_folder)[metrics.IN_PROGRESS] >= 1
        mode.wait_ready(DEADLINE)
        assert mode.wait(DEADLINE)
        page = metrics.wait_metrics(mode.metrics_urls["email"], DEADLINE)
        left = metrics.file_kinds(email.metric_files(), victim.pid)
        if wipe:
            assert left == [] and page.get(metrics.IN_PROGRESS, 0) == 0
        else:
            assert "gauge_livesum" in left and page[metrics.IN_PROGRESS] >= 1


def test_a_frozen_worker_answers_its_page_but_finishes_nothing_while_the_backlog_grows(metered):
    app, mode, _ = metered
    [worker] = mode.groups[0].worker_processes()
    before = metrics.scrape(mode.metrics_urls["email"])
    worker.suspend()
    try:
        metrics.send_emails(app, [f"f{i}@example.com" for i in range(5)])
        after = metrics.scrape(mode.metrics_urls["email"])
        assert after.get(metrics.PROCESSED, 0) == before.get(metrics.PROCESSED, 0)
        assert metrics.backlog(app, "email") == 5
        assert metrics.oldest_waiting_seconds(app, "email") > 0
    finally:
        worker.resume()
    assert mode.wait(DEADLINE)
    assert metrics.backlog(app, "email") == 0 and metrics.oldest_waiting_seconds(app, "email") == 0


def test_a_worker_frozen_holding_its_prefetch_leaves_the_list_empty_but_not_the_backlog(metered):
    app, mode, smtp = metered
    email = mode.groups[0]
    url = mode.metrics_urls["email"]
    [worker] = email.worker_processes()
    prefetch = 2 * email.threads
    smtp.delay = 1.0  # nothing finishes while the test looks
    metrics.send_emails(app, [f"h{i}@example.com" for i in range(prefetch)])
    metrics.wait_taken(app, "email", url, email.threads, DEADLINE)
    metrics.freeze(worker)
    try:
        assert metrics.listed(app, "email") == 0, "the worker left messages in the list"
        assert metrics.backlog(app, "email") == prefetch, "the __acks__ set was not counted"
        assert metrics.oldest_waiting_seconds(app, "email") > 0
    finally:
        smtp.delay = 0.01
        worker.resume()
    assert mode.wait(DEADLINE)
    assert metrics.backlog(app, "email") == 0


def test_the_age_reads_every_message_and_leaves_retries_out(metered):
    """On a queue no worker consumes: the head is not the oldest, and a retry's first
    ``message_timestamp`` is not when it came back."""
    app, mode, _ = metered
    queue = "nobody"
    hour_ago = int((time.time() - 3600) * 1000)

    def message(timestamp: int, **options: object) -> Message:
        return Message(queue_name=queue, actor_name="nothing", args=(), kwargs={},
                       options=dict(options), message_timestamp=timestamp)

    namespace = mode.broker_config.namespace
    try:
        mode.broker.enqueue(message(hour_ago, retries=1))  # a retry, first sent an hour ago
        assert metrics.oldest_waiting_seconds(app, queue) == 0
        mode.broker.enqueue(message(int(time.time() * 1000)))  # a fresh one at the head
        assert metrics.oldest_waiting_seconds(app, queue) < 600
        mode.broker.enqueue(message(hour_ago))  # a first attempt, pushed at the tail
        assert metrics.oldest_waiting_seconds(app, queue) >= 3600
        assert metrics.backlog(app, queue) == 3 == metrics.listed(app, queue)
    finally:
        client = redis.Redis.from_url(redis_url())
        client.delete(f"{namespace}:{queue}", f"{namespace}:{queue}.msgs")
        client.close()


def test_show_source_prints_dramatiqs_lines_without_importing_the_module(capsys):
    code = ("import sys; from shared.production.metrics import show_source; "
            "show_source('dramatiq.middleware.prometheus', 'HTTP_HOST', 'Prometheus.after_enqueue'); "
            "print('imported' if 'dramatiq.middleware.prometheus' in sys.modules else 'not imported')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=DEADLINE, check=True).stdout
    assert 'HTTP_HOST = os.getenv("dramatiq_prom_host", "0.0.0.0")' in out
    assert "def after_enqueue(self, broker, message, delay):" in out
    assert out.rstrip().endswith("not imported")
    metrics.show_source("dramatiq.worker", "ConsumerThread.handle_delayed_messages",
                        docstrings=False)
    out = capsys.readouterr().out
    assert "(docstring left out)" in out and "Enqueue any delayed" not in out
    assert "def handle_delayed_messages(self) -> None:" in out
    with pytest.raises(LookupError, match="Prometheus.nothing is not defined"):
        metrics.show_source("dramatiq.middleware.prometheus", "Prometheus.nothing")


def test_file_kinds_names_one_processs_files(tmp_path):
    for name in ("counter_12.db", "gauge_livesum_12.db", "counter_120.db", "histogram_3.db"):
        (tmp_path / name).touch()
    assert metrics.file_kinds(tmp_path.iterdir(), 12) == ["counter", "gauge_livesum"]
