"""The lesson's closing table: one line per design, numbers in shared.fmt formats."""

from __future__ import annotations

from collections.abc import Sequence

from shared.fmt import fmt_duration
from shared.priorities.run import Outcome


def comparison_table(outcomes: Sequence[Outcome], *, labels: Sequence[str] | None = None,
                     target: float) -> str:
    """A plain-text table: threads, the reset email's wait, target met, newsletter time."""
    labels = list(labels) if labels is not None else [o.design.name for o in outcomes]
    width = max(len("design"), *(len(label) for label in labels))
    lines = [f"{'design':<{width}}  threads  reset waited  target  newsletter took"]
    for label, outcome in zip(labels, outcomes):
        met = "met" if outcome.reset_wait <= target else "missed"
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
