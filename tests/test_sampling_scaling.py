"""Sampler (threads and memory over time), pool scaling measurements, and lesson 02's figures."""

import threading
import time
from functools import partial

import psutil
import pytest

from shared.jobs import send_welcome_email
from shared.processes import wait_until
from shared.queue_plots import (plot_backoff, plot_bounded_queue, plot_queue_waits, plot_scaling,
                                plot_threads_and_memory, plot_threads_compared)
from shared.sampling import Sample, Sampler
from shared.smtp_sink import SmtpSink
from shared.scaling import GAIN_WORDS, Point, count_primes, gain_in_words, measure
from shared.store import JobStatus, Span


def test_the_sampler_sees_threads_come_and_go_and_stops_its_own():
    # Other tests' daemon threads may come and go meanwhile: only the 20 sleepers
    # started here are counted on, as a rise and a fall of at least 20.
    release = threading.Event()
    with Sampler(interval=0.005, extra={"answer": lambda: 42}) as watch:
        wait_until(lambda: len(watch.samples) >= 10, 10, "ten samples before the sleepers start")
        sleepers = [threading.Thread(target=release.wait, args=(10,)) for _ in range(20)]
        for thread in sleepers:
            thread.start()
        wait_until(lambda: watch.peak("threads") >= watch.first("threads") + 20, 10,
                   "a sample with the 20 sleepers")
        release.set()
        for thread in sleepers:
            thread.join(10)
        ended = len(watch.samples)
        wait_until(lambda: len(watch.samples) > ended, 10, "a sample after the sleepers ended")
    assert watch.samples[-1].threads <= watch.peak("threads") - 20
    assert watch.peak("answer") == 42 and watch.peak("rss") > 0
    assert not [t for t in threading.enumerate() if t.name == "sampler"]
    times = [sample.t for sample in watch.samples]
    assert times == sorted(times) and len(times) >= 10


def test_the_sampler_refuses_nonsense():
    with pytest.raises(ValueError, match="interval"):
        Sampler(interval=0)
    with pytest.raises(ValueError, match="with block"):
        Sampler().peak("threads")


def test_count_primes_counts_primes():
    assert [count_primes(n) for n in (2, 3, 10, 100)] == [0, 1, 4, 25]


def test_waiting_jobs_scale_with_threads():
    with SmtpSink(delay=0.1) as sink:
        email = partial(send_welcome_email, smtp_host=sink.host, smtp_port=sink.port)
        one, four = measure(email, [f"u{n}@example.com" for n in range(8)], [1, 4])
        assert (one.workers, four.workers, one.jobs) == (1, 4, 8)
        assert four.rate > 2 * one.rate  # ideal 4x; wide margin for a busy machine
        assert len(sink.inbox) == 16


def test_processes_run_pure_python_and_time_their_startup_apart():
    before = set(psutil.Process().children())  # e.g. the embedded Redis of earlier tests
    points = measure(count_primes, [2_000] * 4, [1, 2], kind="processes")
    assert [(p.kind, p.workers, p.jobs) for p in points] == [("processes", 1, 4), ("processes", 2, 4)]
    assert points[0].startup > 0 and points[1].startup == 0  # one pool, started once
    assert points[0].memory > 2**20 and points[1].memory == 0  # its processes' memory, once
    assert all(p.seconds > 0 for p in points)
    assert not set(psutil.Process().children()) - before  # the pool and spawn's helper are gone


def test_a_process_pool_counts_only_its_own_workers_and_not_the_warm_up_nap(monkeypatch):
    from shared import scaling

    counted = []
    real = scaling._workers_of
    monkeypatch.setattr(scaling, "_workers_of", lambda pool: counted.append(real(pool)) or counted[-1])
    begin = time.perf_counter()
    points = measure(count_primes, [10] * 2, [1, 2], kind="processes")
    took = time.perf_counter() - begin
    assert len(counted[0]) == 2  # the 2 workers, not spawn's resource tracker as well
    assert points[0].memory > 2**20
    assert points[0].startup < took - scaling.NAP_SECONDS  # the nap is not start-up


@pytest.mark.parametrize("args, rule", [
    (([], [1]), "inputs is empty"), (([1], [0]), "pool_sizes"), (([1], [1], "fibers"), "kind"),
    (([1], [1], "threads", 0), "repeat"),
])
def test_measure_names_what_is_wrong(args, rule):
    inputs, sizes, *rest = args
    options = dict(zip(("kind", "repeat"), rest))
    with pytest.raises(ValueError, match=rule):
        measure(count_primes, inputs, sizes, **options)


def test_repeat_keeps_the_fastest_run_of_each_size():
    calls = []

    def job(x):
        calls.append(x)
        time.sleep(0.01 if len(calls) > 2 else 0.2)  # the first run of size 1 is slow

    [point] = measure(job, [1, 2], [1], repeat=3)
    assert len(calls) == 6
    assert point.seconds < 0.15


@pytest.mark.parametrize("speedup, perfect, words", [
    (0.5, 2, "a loss"), (1.0, 2, "no gain"), (1.4, 2, "a partial gain"), (1.9, 2, "near-perfect"),
    (2.4, 2, "more than perfect"), (6.8, 8, "near-perfect"), (3.0, 8, "a partial gain"),
])
def test_a_speedup_in_words_compares_it_with_perfect(speedup, perfect, words):
    assert gain_in_words(speedup, perfect) == words
    assert words in GAIN_WORDS


def test_a_speedup_in_words_refuses_nonsense():
    with pytest.raises(ValueError, match="perfect >= 1"):
        gain_in_words(1.0, 0.5)


def test_perfect_scaling_is_drawn_at_the_measured_pool_sizes():
    import matplotlib.pyplot as plt
    # 2.4x with 2 workers is above perfect: the reference must say 2 there, not 3.3.
    points = {"email": [Point("threads", w, 8, 8 / r, 0.0) for w, r in ((1, 1), (2, 2.4), (8, 6.8))]}
    ax = plot_scaling(points, cores=2).axes[0]
    perfect = next(line for line in ax.lines if line.get_label() == "perfect scaling")
    assert list(perfect.get_xdata()) == [1, 2, 8] and list(perfect.get_ydata()) == [1, 2, 8]
    assert ax.get_ylim()[1] > 8  # every point and the perfect line fit
    plt.close("all")


def test_the_figures_draw_what_they_are_given():
    with Sampler(interval=0.005) as watch:
        time.sleep(0.03)
    fig = plot_threads_and_memory(watch, xmax=1.0)
    assert fig.axes[1].get_xlim() == (0, 1.0)
    jobs = [JobStatus(f"j{n}", kind, "done", 1, None, 100.0 + n, 100.5 + n, 101.0 + n)
            for n, kind in enumerate(["welcome_email", "avatar", "welcome_email"])]
    fig = plot_queue_waits(jobs, xmax=5)
    assert len(fig.axes[0].patches) == 6  # a wait bar and a run bar per job
    points = {"email": [Point("threads", w, 8, 8 / w, 0.0) for w in (1, 2, 4)]}
    fig = plot_scaling(points, cores=2)
    speedups = fig.axes[0].lines[-1].get_ydata()
    assert list(speedups) == pytest.approx([1, 2, 4])
    fig = plot_backoff([(1, 0.05), (2, 0.15)], base=0.1, cap=0.4)
    assert len(fig.axes[0].collections[-1].get_offsets()) == 2
    import matplotlib.pyplot as plt
    plt.close("all")


def _sampled(values, name="queued", start=100.0, step=0.1):
    watch = Sampler()
    watch.started = start
    watch.samples = [Sample(start + n * step, 5 + value, 1, {name: value})
                     for n, value in enumerate(values)]
    return watch


def test_the_bounded_queue_figure_shows_depth_against_the_bound_and_counts_answers():
    import matplotlib.pyplot as plt
    watch = _sampled([0, 4, 10, 9, 10, 8, 4, 0])
    answers = [(100.05, 202), (100.12, 202), (100.2, 503), (100.25, 503), (100.31, 202), (100.4, 503)]
    top, bottom = plot_bounded_queue(watch, answers, bound=10, started=100.0).axes
    bound = next(line for line in top.lines if "bound" in line.get_label())
    assert list(bound.get_ydata()) == [10, 10] and top.get_ylim()[1] > 10
    counted = {line.get_label(): line.get_ydata()[-1] for line in bottom.lines}
    assert counted == {"202 answers so far": 3, "503 answers so far": 3}
    assert bottom.get_xlim()[1] >= 0.7  # the last sample, 0.7 s in, is on the figure
    plt.close("all")


def test_the_thread_comparison_draws_one_line_per_run_on_one_scale():
    import matplotlib.pyplot as plt
    ax = plot_threads_compared({"nowait": _sampled([0, 300, 0]), "pool": _sampled([0, 20, 0])}).axes[0]
    assert [line.get_label() for line in ax.lines] == ["nowait", "pool"]
    assert [max(line.get_ydata()) for line in ax.lines] == [305, 25]
    plt.close("all")


def test_the_thread_comparison_marks_a_moment_of_one_run_in_its_colour():
    import matplotlib.pyplot as plt
    runs = {"nowait": _sampled([0, 300, 0]), "pool": _sampled([0, 20, 0])}
    ax = plot_threads_compared(runs, marks={"pool": (100.15, "queue dropped")}).axes[0]
    mark = ax.lines[-1]
    assert list(mark.get_xdata()) == pytest.approx([0.15, 0.15])
    assert mark.get_color() == ax.lines[1].get_color()
    assert [text.get_text() for text in ax.texts] == ["queue dropped"]
    plt.close("all")


def test_the_scaling_figure_tells_lines_apart_on_a_doubling_scale():
    import matplotlib.pyplot as plt
    same = [Point("threads", w, 8, 8 / w, 0.0) for w in (1, 2, 4)]
    ax = plot_scaling({"avatar": same, "processes": same}, cores=2).axes[0]
    drawn = [line for line in ax.lines if line.get_label() in ("avatar", "processes")]
    assert drawn[0].get_marker() != drawn[1].get_marker()
    assert drawn[0].get_linestyle() != drawn[1].get_linestyle()
    assert ax.get_yscale() == "log"
    plt.close("all")


def test_the_attempts_figure_puts_every_attempt_of_every_job_on_one_clock():
    import matplotlib.pyplot as plt
    from shared.queue_plots import plot_attempts
    spans = [Span("a", "r", "welcome_email", 1, 10.0, 10.1, "451"), Span("b", "r", "welcome_email", 1, 10.0, 10.1, "451"),
             Span("a", "r", "welcome_email", 2, 10.15, 10.2), Span("b", "r", "welcome_email", 2, 10.3, 10.4)]
    ax = plot_attempts(spans).axes[0]
    refused, through = ax.collections[:2]
    assert sorted(x for x, _ in refused.get_offsets()) == [0.0, 0.0]
    assert sorted(round(x, 2) for x, _ in through.get_offsets()) == [0.15, 0.3]
    assert sorted(y for _, y in through.get_offsets()) == [1, 2]  # one row per job
    plt.close("all")


def test_the_backoff_figure_shows_where_the_cap_binds():
    import matplotlib.pyplot as plt
    waits = [(1, 0.02), (2, 0.05), (3, 0.09), (4, 0.04)]
    ax = plot_backoff(waits, base=0.03, cap=0.1).axes[0]
    uncapped = next(c for c in ax.collections if c.get_label().startswith("without the cap"))
    assert [round(seg[0][1], 3) for seg in uncapped.get_segments()] == [0.12, 0.24]  # retries 3, 4
    assert ax.get_ylim()[1] > 0.24
    plt.close("all")


def test_the_sampler_reads_its_last_sample_too():
    watch = _sampled([0, 7, 3])
    assert (watch.first("queued"), watch.peak("queued"), watch.last("queued")) == (0, 7, 3)
    with pytest.raises(ValueError, match="no samples"):
        Sampler().last("threads")
