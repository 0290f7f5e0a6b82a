"""Both figures, drawn from hand-made measurements on the Agg backend."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from shared.store import Span as JobSpan  # noqa: E402
from shared.load import LoadResult, Record  # noqa: E402
from shared.plots import (  # noqa: E402
    WAITING_COLOUR,
    plot_latency_distribution,
    plot_timeline,
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
        span(0, "email", 0.01, 0.55),
        span(0, "avatar", 0.55, 0.79),
        span(2, "email", 0.02, 0.50),
        span(2, "avatar", 0.50, 0.74),
        span(1, "email", 0.86, 1.69, error="SMTPServerDisconnected: gone"),
        span(3, "email", 1.01, 1.60),  # ran after its request had given up
        span(99, "email", 0.0, 5.0),   # another run's request: not drawn
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
    assert legend_texts(fig) == ["waiting for the answer", "email job", "avatar job", "failed"]
    assert ax.get_xlabel() == "seconds since the run started"
    assert ax.get_ylabel() == "request, in the order sent"
    assert ax.get_title() == "blocking: each request, from sent to answered"


def test_timeline_rows_follow_start_times_first_at_the_top(blocking):
    ax = plot_timeline(blocking).axes[0]

    waiting = sorted(bars(ax, WAITING_COLOUR), key=lambda bar: bar.get_y())
    starts = [round(bar.get_x(), 6) for bar in waiting]
    assert starts == [0.0, 0.01, 0.76, 0.85]  # row 1 .. row 4
    widths = [round(bar.get_width(), 6) for bar in waiting]
    assert widths == [0.8, 0.74, 0.24, 0.85]
    assert ax.yaxis_inverted()
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["1", "2", "3", "4"]


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
    # 502 answer of request 1 (row 4) at 1.70; its failed job ended at 1.69;
    # request 3 (row 3) timed out at 1.00.
    assert points == [(1.0, 3.0), (1.69, 4.0), (1.7, 4.0)]


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
    spans = [span(i, "email", i * 0.01 + 0.1, i * 0.01 + 0.4) for i in range(150)]
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
    plot_latency_distribution([blocking])

    assert len(plt.get_fignums()) == figures_before + 2
