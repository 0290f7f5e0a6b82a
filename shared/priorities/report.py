"""The lesson's closing table: one line per design, numbers in shared.fmt formats."""

from __future__ import annotations

from collections.abc import Sequence

from shared.fmt import fmt_duration, fmt_share
from shared.priorities.run import Outcome


def comparison_table(outcomes: Sequence[Outcome], *, labels: Sequence[str] | None = None,
                     target: float) -> str:
    """A plain-text table: threads, the reset email's wait, target met, newsletter time."""
    labels = list(labels) if labels is not None else [o.design.name for o in outcomes]
    width = max(len("design"), *(len(label) for label in labels))
    lines = [f"{'design':<{width}}  threads  reset waited  target  newsletter took"]
    for label, outcome in zip(labels, outcomes):
        met = verdict(outcome, target)
        lines.append(f"{label:<{width}}  {outcome.design.threads:>7}  "
                     f"{fmt_duration(outcome.reset_wait):>12}  {met:>6}  "
                     f"{fmt_duration(outcome.newsletter_seconds):>15}")
    return "\n".join(lines)


def summary_line(outcome: Outcome, label: str | None = None) -> str:
    """One sentence on one run: the reset email's wait, and what it waited behind."""
    return (f"{label or outcome.design.name}: the reset email waited "
            f"{fmt_duration(outcome.reset_wait)}; {outcome.share_waited_for:.0%} of the copies "
            f"still queued when it was sent started before it; the newsletter took "
            f"{fmt_duration(outcome.newsletter_seconds)}.")


def verdict(outcome: Outcome, target: float) -> str:
    """``"met"`` or ``"missed"``: did the reset email start within ``target`` seconds?"""
    return "met" if outcome.reset_wait <= target else "missed"


def run_title(outcome: Outcome, label: str, target: float) -> str:
    """A plot title computed from the run: its label, the target verdict and the wait."""
    return (f"{label}: target {verdict(outcome, target)} "
            f"(reset waited {fmt_duration(outcome.reset_wait)})")


def where_it_waited(outcome: Outcome) -> str:
    """One sentence: how long the reset email spent in Redis, and held by a worker."""
    reset = outcome.reset
    return (f"The reset email spent {fmt_duration(reset.in_redis)} in Redis and "
            f"{fmt_duration(reset.held)} held by the worker before it started: "
            f"{fmt_share(reset.in_redis, reset.wait) if reset.wait > 0 else '0%'} of its wait was in Redis, "
            "where no priority applies.")
