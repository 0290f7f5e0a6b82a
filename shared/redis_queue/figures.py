"""Lesson 03's two drawings: the reliable queue's keys, and one crash on a time line.

:func:`draw_reliable_queue` is a diagram (no data): where a job sits, and
which command moves it. :func:`plot_crash_timeline` draws one real crash
from the times a :class:`~shared.redis_queue.demo.Crash` recorded.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from shared.redis_queue.demo import Crash

DPI = 90


def _box(ax, x: float, y: float, w: float, h: float, label: str, colour: str) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=colour,
                                edgecolor="#555555", linewidth=0.8))
    ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=9)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str, *,
           colour: str = "#333333", rad: float = 0.0, offset: tuple[float, float] = (0, 0.04),
           style: str = "-|>") -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": style, "color": colour, "linewidth": 1.2,
                            "connectionstyle": f"arc3,rad={rad}"})
    mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
    ax.text(*mid, label, ha="center", va="bottom", fontsize=8, color=colour)


def draw_reliable_queue() -> Figure:
    """Producer -> queue -> a worker's processing list -> LREM; the reaper's way back;
    the heartbeat key and the set of workers that the reaper reads."""
    fig, ax = plt.subplots(figsize=(8.0, 3.4), dpi=DPI)
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.55, 3.2)
    ax.axis("off")
    _box(ax, 0.1, 1.9, 1.6, 0.7, "web process\n(producer)", "#e8f0fb")
    _box(ax, 2.7, 1.9, 2.0, 0.7, "<prefix>:queue\n(a list)", "#fdf1dc")
    _box(ax, 5.8, 1.9, 2.3, 0.7, "<prefix>:processing:w1\n(w1's list)", "#fdf1dc")
    _box(ax, 8.6, 1.9, 1.3, 0.7, "done\n(gone)", "#e9f5e9")
    _box(ax, 5.8, 0.25, 2.3, 0.6, "<prefix>:heartbeat:w1\n(a key with a TTL)", "#f3f3f3")
    _box(ax, 8.6, 0.25, 1.3, 0.6, "w1's heartbeat\nthread", "#e8f0fb")
    _box(ax, 2.7, 0.25, 2.0, 0.6, "reaper", "#fbe4e4")
    _box(ax, 0.1, 0.25, 1.8, 0.6, "<prefix>:workers\n(a set of names)", "#f3f3f3")
    _arrow(ax, (8.6, 0.55), (8.1, 0.55), "every\nTTL/4", colour="#777777", offset=(0, 0.33))
    ax.text(9.25, 0.05, "SET PX + SADD\n(w1 also SADDs\nafter each BLMOVE)", ha="center", va="top",
            fontsize=7, color="#777777")
    _arrow(ax, (2.7, 0.55), (1.9, 0.55), "SMEMBERS,\nSREM", colour="#777777", offset=(0, 0.33))
    _arrow(ax, (1.7, 2.25), (2.7, 2.25), "LPUSH")
    _arrow(ax, (4.7, 2.25), (5.8, 2.25), "BLMOVE\n(atomic)")
    _arrow(ax, (8.1, 2.25), (8.6, 2.25), "LREM\n(ack)")
    _arrow(ax, (5.8, 0.55), (4.7, 0.55), "EXISTS?", colour="#777777", style="<|-")
    _arrow(ax, (6.2, 1.9), (4.0, 1.9), "heartbeat gone: LMOVE back\n(checked in the same script)",
           colour="#c0392b", rad=-0.35, offset=(0, -0.9))
    ax.set_title("Where a job sits: it leaves Redis only when its worker acknowledges it",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_crash_timeline(crash: Crash, heartbeat_ttl: float) -> Figure:
    """The first attempt, the kill, the heartbeat's expiry, the reaper, the second attempt."""
    if crash.reaped is None or crash.rerun is None or crash.finished is None:
        raise ValueError("the crash is not over: call crash.finish(store) once the job is done")
    t0 = crash.started
    fig, ax = plt.subplots(figsize=(8.0, 2.6), dpi=DPI)
    first, second = "first attempt", "second attempt"
    right = (crash.finished - t0) * 1.05
    # A kill a few ms into the job would draw a bar too thin to see: at least 0.8% of the axis.
    ax.barh(first, max(crash.killed - t0, 0.008 * right), left=0, color="tab:blue", height=0.5)
    ax.barh(second, crash.finished - crash.rerun, left=crash.rerun - t0, color="tab:green",
            height=0.5)
    ax.barh("job only in Redis", crash.reaped - crash.killed, left=crash.killed - t0,
            color="#fdf1dc", edgecolor="#c8a45a", height=0.5)
    events = [(crash.killed, "SIGKILL", "tab:red"),
              (crash.expires, "heartbeat expires", "#555555"),
              (crash.reaped, "reaper moves it back", "tab:orange")]
    for i, (t, label, colour) in enumerate(events):
        x = t - t0
        ax.axvline(x, color=colour, linewidth=1, linestyle="--")
        left = x < 0.6 * right
        ax.annotate(label, xy=(x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3 if left else -3, -4 - 11 * i), textcoords="offset points",
                    fontsize=8, color=colour, va="top", ha="left" if left else "right")
    ax.set_xlabel(f"seconds since the job started (heartbeat TTL {heartbeat_ttl:g} s)")
    ax.set_xlim(0, right)
    ax.invert_yaxis()
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_title(f"Worker {crash.worker} killed mid-job: its job waits in Redis, then runs again",
                 fontsize=10)
    fig.tight_layout()
    return fig
