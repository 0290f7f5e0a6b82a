"""Where one request's time went: the server's own timings, and the rest."""

from __future__ import annotations

from shared.fmt import fmt_duration

OTHER = "other"  # HTTP, the framework, the network stack: what the server did not time


def breakdown(total: float, server_timing: dict[str, float]) -> dict[str, float]:
    """Split ``total`` seconds (as the client measured it) into named steps.

    ``server_timing`` holds the durations the server reported (the
    ``Server-Timing`` header, in seconds). Whatever they do not cover is
    ``other``.
    """
    if total <= 0:
        raise ValueError(f"total must be a positive number of seconds, got {total}")
    steps = dict(server_timing)
    steps[OTHER] = max(0.0, total - sum(server_timing.values()))
    return steps


def format_breakdown(total: float, server_timing: dict[str, float]) -> str:
    """A small table: one line per step, its time and its share of the total."""
    steps = breakdown(total, server_timing)
    width = max(len(name) for name in [*steps, "total"])
    lines = [f"{'step':<{width}}  {'time':>9}  {'share':>5}"]
    for name, seconds in [*steps.items(), ("total", total)]:
        lines.append(f"{name:<{width}}  {fmt_duration(seconds):>9}  {seconds / total:>5.0%}")
    return "\n".join(lines)
