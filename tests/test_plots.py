"""Both figures, drawn from hand-made measurements on the Agg backend."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from shared.store import Span as JobSpan  # noqa: E402
from shared.load import LoadResult, Record  # noqa: E402
from shared.plots import (  # noqa: E402
    JOB_COLOURS,
    WAITING_COLOUR,
    plot_latency_distribution,
    plot_timeline,
    plot_timelines,
)

T0 = 1000.0


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def record(index: int, start: float, end: float, status: int | None = 201) -> Record:
    return Record(index=index, request_id=f"r{index:04d}-test", start=T0 + start,
                  end=T0 + end, status=status,
                  error="ReadTimeout" if status is None else None, body=None)


def span(index: int, name: str, start: float, end: float, error: str | None = None) -> JobSpan:
    return JobSpan(f"j{index}-{name}", f"r{index:04d}-test", name, 1, T0 + start, T0 + end, error)


def load_result(label: str, records: list[Record]) -> LoadResult:
    return LoadResult(label=label, records=records, started=T0,
                      wall=max(r.end for r in records) - T0, concurrency=2)


@pytest.fixture
def blocking() -> LoadResult:
    # Issued as 0, 1, 2, 3 but request 1 started last: rows follow start times.
    return load_result("blocking", [
        record(0, 0.00, 0.80),
        record(1, 0.85, 1.70, status=502),
        record(2, 0.01, 0.75),
        record(3, 0.76, 1.00, status=None),
    ])


@pytest.fixture
def spans() -> list[JobSpan]:
    return [
        span(0, "welcome_email", 0.01, 0.55),
        span(0, "avatar", 0.55, 0.79),
        span(2, "welcome_email", 0.02, 0.50),
        span(2, "avatar", 0.50, 0.74),
        span(1, "welcome_email", 0.86, 1.69, error="SMTPServerDisconnected: gone"),
        span(3, "welcome_email", 1.01, 1.60),  # ran after its request had given up
        span(99, "welcome_email", 0.0, 5.0),   # another run's request: not drawn
    ]


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def legend_texts(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def bars(ax, colour) -> list:
    return [patch for patch in ax.patches if patch.get_facecolor() == to_rgba(colour)]


# --- timeline ---------------------------------------------------------------

def test_timeline_draws_a_bar_per_request_and_per_job(blocking, spans):
    fig = plot_timeline(blocking, spans)

    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 4 + 6  # the span of request 99 is not ours
    assert len(bars(ax, WAITING_COLOUR)) == 4
    assert legend_texts(fig) == ["waiting for the answer", "welcome email job", "avatar job",
                                 "failed"]
    assert ax.get_xlabel() == "seconds since the run started"
    assert ax.get_ylabel() == "request, in the order served"
    assert ax.get_title() == "blocking: each request, from sent to answered"


def rows(ax) -> list[tuple[float, float]]:
    """(start, width) of each grey bar, from the top row down."""
    waiting = sorted(bars(ax, WAITING_COLOUR), key=lambda bar: bar.get_y())
    return [(round(bar.get_x(), 6), round(bar.get_width(), 6)) for bar in waiting]


def test_timeline_rows_without_jobs_follow_answer_times_first_at_the_top(blocking):
    ax = plot_timeline(blocking).axes[0]

    # answered at 0.75 (request 2), 0.80 (0), 1.00 (3), 1.70 (1)
    assert rows(ax) == [(0.01, 0.74), (0.0, 0.8), (0.76, 0.24), (0.85, 0.85)]
    assert ax.yaxis_inverted()
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["1", "2", "3", "4"]


def test_timeline_rows_follow_when_each_request_was_served(blocking, spans):
    ax = plot_timeline(blocking, spans).axes[0]

    # first job started at 0.01 (request 0), 0.02 (2), 0.86 (1), 1.01 (3)
    assert rows(ax) == [(0.0, 0.8), (0.01, 0.74), (0.85, 0.85), (0.76, 0.24)]


def test_a_single_threaded_server_answering_out_of_order_gets_ordered_rows():
    # Sent 0 then 1 at once; the server took request 1 first.
    result = load_result("single", [record(0, 0.0, 1.0), record(1, 0.001, 0.5)])
    served = [span(1, "welcome_email", 0.01, 0.49), span(0, "welcome_email", 0.51, 0.99)]
    ax = plot_timeline(result, served).axes[0]

    assert rows(ax) == [(0.001, 0.499), (0.0, 1.0)]
    job_rows = sorted((round(bar.get_y() + bar.get_height() / 2), round(bar.get_x(), 6))
                      for bar in bars(ax, JOB_COLOURS["welcome_email"]))
    assert job_rows == [(1, 0.01), (2, 0.51)]  # each job on its own request's row


def test_spans_are_duck_typed_so_stored_spans_work_too(blocking):
    @dataclass(frozen=True)
    class StoredSpan:  # the shape of spans read back from the SQLite store
        job_id: str
        attempt: int
        request_id: str
        name: str
        start: float
        end: float
        error: str | None = None

        @property
        def ok(self) -> bool:
            return self.error is None

    stored = [StoredSpan("j1", 1, "r0000-test", "avatar", T0 + 0.1, T0 + 0.3, "OSError"),
              StoredSpan("j1", 2, "r0000-test", "avatar", T0 + 0.4, T0 + 0.6)]
    fig = plot_timeline(blocking, stored)

    assert legend_texts(fig) == ["waiting for the answer", "avatar job", "failed"]
    assert len(bars(fig.axes[0], JOB_COLOURS["avatar"])) == 2  # both attempts


def test_xmax_gives_figures_one_time_scale(blocking, spans):
    short = load_result("short", [record(0, 0.0, 0.3)])

    assert plot_timeline(blocking, spans, xmax=5.0).axes[0].get_xlim() == (0.0, 5.0)
    assert plot_timeline(short, xmax=5.0).axes[0].get_xlim() == (0.0, 5.0)
    assert plot_timeline(short).axes[0].get_xlim()[1] < 1.0  # its own scale otherwise


@pytest.mark.parametrize("xmax", [0, -1.0, float("nan"), float("inf"), "5"])
def test_xmax_must_be_a_positive_number_of_seconds(blocking, xmax):
    with pytest.raises(ValueError, match="xmax must be"):
        plot_timeline(blocking, xmax=xmax)


def test_timeline_shows_jobs_that_outlive_the_answer(blocking, spans):
    ax = plot_timeline(blocking, spans).axes[0]

    waiting_row_3 = next(bar for bar in bars(ax, WAITING_COLOUR)
                         if round(bar.get_x(), 6) == 0.76)
    late_job = next(bar for bar in ax.patches if round(bar.get_x(), 6) == 1.01)
    assert late_job.get_x() > waiting_row_3.get_x() + waiting_row_3.get_width()
    assert late_job.get_facecolor() != to_rgba(WAITING_COLOUR)
    assert ax.get_xlim()[1] >= 1.70  # nothing is cut off on the right
    # and a job drawn on the same row as its request
    row_of_request = waiting_row_3.get_y() + waiting_row_3.get_height() / 2
    assert late_job.get_y() + late_job.get_height() / 2 == pytest.approx(row_of_request)


def test_timeline_marks_failed_requests_and_jobs(blocking, spans):
    ax = plot_timeline(blocking, spans).axes[0]

    (crosses,) = ax.collections
    points = sorted((round(x, 6), round(y, 6)) for x, y in crosses.get_offsets())
    # 502 answer of request 1 (row 3) at 1.70; its failed job ended at 1.69;
    # request 3 (row 4, its job started last) timed out at 1.00.
    assert points == [(1.0, 4.0), (1.69, 3.0), (1.7, 3.0)]


def test_timeline_without_jobs_or_failures_has_a_one_entry_legend():
    result = load_result("", [record(0, 0.0, 0.1), record(1, 0.0, 0.2)])
    fig = plot_timeline(result, title="custom title")

    assert legend_texts(fig) == ["waiting for the answer"]
    assert len(fig.axes[0].patches) == 2
    assert len(fig.axes[0].collections) == 0
    assert fig.axes[0].get_title() == "custom title"


def test_timeline_stays_legible_with_many_requests():
    records = [record(i, i * 0.01, i * 0.01 + 0.5) for i in range(150)]
    result = load_result("many", records)
    spans = [span(i, "welcome_email", i * 0.01 + 0.1, i * 0.01 + 0.4) for i in range(150)]
    fig = plot_timeline(result, spans)

    ax = fig.axes[0]
    assert len(ax.patches) == 300
    assert len(ax.get_yticks()) <= 12  # no per-row labels
    assert 0 < len(png_bytes(fig)) < 200_000


def test_timeline_png_is_small_and_deterministic(blocking, spans):
    first = png_bytes(plot_timeline(blocking, spans))
    second = png_bytes(plot_timeline(blocking, spans))

    assert first.startswith(b"\x89PNG") and len(first) < 200_000
    assert first == second


# --- several timelines, one time axis ----------------------------------------

@pytest.fixture
def threaded() -> LoadResult:
    return load_result("threaded", [record(i, 0.0, 0.30 + 0.01 * i) for i in range(3)])


@pytest.fixture
def threaded_spans() -> list[JobSpan]:
    return [span(i, "avatar", 0.01, 0.29) for i in range(3)] + [span(2, "resize", 0.1, 0.2)]


def test_timelines_stack_runs_in_one_figure_on_one_time_axis(blocking, spans, threaded,
                                                             threaded_spans):
    fig = plot_timelines([(blocking, spans), (threaded, threaded_spans)],
                         ["single-threaded", "threaded"], title="4 clients")

    top, bottom = fig.axes
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_xlim() == bottom.get_xlim()
    assert top.get_xlim()[1] >= 1.70  # the longer run sets the scale
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["single-threaded", "threaded"]
    assert bottom.get_xlabel() == "seconds since the run started" and top.get_xlabel() == ""
    assert fig.get_suptitle() == "4 clients"
    assert len(rows(top)) == 4 and len(rows(bottom)) == 3


def test_timelines_have_one_legend_with_every_job_and_failures_last(blocking, spans, threaded,
                                                                    threaded_spans):
    fig = plot_timelines([(blocking, spans), (threaded, threaded_spans)])

    top, bottom = fig.axes
    assert bottom.get_legend() is None
    assert [text.get_text() for text in top.get_legend().get_texts()] == [
        "waiting for the answer", "welcome email job", "avatar job", "resize job", "failed"]
    # a job keeps its colour from one panel to the next
    assert len(bars(top, JOB_COLOURS["avatar"])) == 2
    assert len(bars(bottom, JOB_COLOURS["avatar"])) == 3
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["blocking", "threaded"]


def test_timelines_take_bare_results_and_a_given_xmax(blocking, threaded):
    fig = plot_timelines([blocking, threaded], xmax=3.0)

    assert [ax.get_xlim() for ax in fig.axes] == [(0.0, 3.0), (0.0, 3.0)]
    assert [len(ax.patches) for ax in fig.axes] == [4, 3]


@pytest.mark.parametrize(("runs", "titles", "complaint"), [
    ([], None, "at least one run"),
    (["blocking"], ["a", "b"], "one title per run"),
])
def test_timelines_refuse_nonsense(blocking, runs, titles, complaint):
    runs = [blocking for _ in runs]
    with pytest.raises(ValueError, match=complaint):
        plot_timelines(runs, titles)


def test_timelines_png_is_small_and_deterministic(blocking, spans, threaded):
    first = png_bytes(plot_timelines([(blocking, spans), threaded]))
    second = png_bytes(plot_timelines([(blocking, spans), threaded]))

    assert first.startswith(b"\x89PNG") and len(first) < 200_000
    assert first == second


# --- latency distribution ---------------------------------------------------

@pytest.fixture
def deferred() -> LoadResult:
    return load_result("deferred", [record(i, i * 0.01, i * 0.01 + 0.004 + i * 0.0005)
                                    for i in range(10)])


def test_distribution_marks_p50_and_p95_of_each_run(blocking, deferred):
    fig = plot_latency_distribution([blocking, deferred])

    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    # blocking latencies: 0.24, 0.74, 0.8, 0.85 -> p50 0.74, p95 0.85
    # deferred latencies: 4.0 ms .. 8.5 ms     -> p50 6.0 ms, p95 8.5 ms
    assert legend_texts(fig) == [
        "blocking p50 740 ms", "blocking p95 850 ms",
        "deferred p50 6.0 ms", "deferred p95 8.5 ms",
    ]
    assert ax.get_xscale() == "log"  # the runs differ by far more than 20x
    assert ax.get_xlabel() == "time the client waited for the answer"
    assert "within" in ax.get_ylabel()
    assert ax.get_title() == "How long each client waited"
    # one curve, two markers (each a line and a dot) per run
    assert len(ax.lines) == 2 * (1 + 2 * 2)
    curve = ax.lines[0]
    assert list(curve.get_ydata()) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_distribution_markers_stand_at_the_percentiles(blocking):
    ax = plot_latency_distribution([blocking]).axes[0]

    p50_line, p95_line = ax.lines[1], ax.lines[3]
    assert list(p50_line.get_xdata()) == pytest.approx([0.74, 0.74])
    assert list(p50_line.get_ydata()) == [0, 0.5]
    assert list(p95_line.get_xdata()) == pytest.approx([0.85, 0.85])
    assert list(p95_line.get_ydata()) == [0, 0.95]


def test_distribution_of_similar_runs_keeps_a_linear_axis(blocking):
    similar = load_result("", [record(0, 0.0, 0.5), record(1, 0.0, 0.6)])
    fig = plot_latency_distribution([blocking, similar], title="two runs")

    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert ax.get_xlim()[0] == 0
    assert legend_texts(fig)[2:] == ["run 2 p50 500 ms", "run 2 p95 600 ms"]
    assert ax.get_title() == "two runs"


def test_distribution_png_is_small_and_deterministic(blocking, deferred):
    first = png_bytes(plot_latency_distribution([blocking, deferred]))
    second = png_bytes(plot_latency_distribution([blocking, deferred]))

    assert first.startswith(b"\x89PNG") and len(first) < 200_000
    assert first == second


# --- both -------------------------------------------------------------------

@pytest.mark.parametrize("draw", [
    lambda result, ax: plot_latency_distribution([result], ax=ax),
    lambda result, ax: plot_timeline(result, ax=ax),
])
def test_drawing_into_given_axes_makes_no_new_figure(blocking, draw):
    fig, (left, right) = plt.subplots(1, 2)
    figures_before = plt.get_fignums()

    assert draw(blocking, right) is fig
    assert plt.get_fignums() == figures_before
    assert right.has_data() and not left.has_data()


def test_own_figures_are_registered_with_pyplot_for_inline_display(blocking):
    figures_before = len(plt.get_fignums())

    plot_timeline(blocking)
    plot_timelines([blocking, blocking])
    plot_latency_distribution([blocking])

    assert len(plt.get_fignums()) == figures_before + 3
