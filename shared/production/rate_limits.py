"""Rate limits, measured: a burst of emails against a provider that takes K a second.

The provider is :class:`shared.retries.flaky_smtp.FlakySmtp` with
``rate_limit=K``: it accepts at most K recipients in any one-second span and
answers ``421`` above it. The lab is :class:`shared.retries.lab.RetryLab`:
a real Redis broker, a real in-process worker, a log of every attempt.

This module holds only the plumbing: send a burst and wait for it
(:func:`burst`), sum up what happened (:class:`Run`), draw the sends per
second against the limit (:func:`plot_rates`), and count what a section left
behind (:func:`rate_lab_leftovers`). The actors, limiters and retry rules are written
in the notebook, where you can read them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import redis
from dramatiq.actor import Actor
from dramatiq.rate_limits import WindowRateLimiter
from matplotlib.figure import Figure

from shared.fmt import fmt_duration, fmt_ratio, fmt_share
from shared.plots import DPI
from shared.retries.flaky_smtp import RATE_WINDOW, Answer, FlakySmtp
from shared.retries.lab import RetryLab

#: The provider's limit in the lesson: recipients accepted in any one second.
PROVIDER_LIMIT = 10
#: How many sign-ups arrive at once in the lesson's burst.
BURST = 20
#: Codes the provider answers: slow down, no such mailbox.
SLOW_DOWN, NO_SUCH_MAILBOX = 421, 550


def addresses(n: int, prefix: str = "user") -> list[str]:
    """``n`` distinct recipient addresses: ``user0@example.com``, ..."""
    return [f"{prefix}{i}@example.com" for i in range(n)]


@dataclass(frozen=True)
class Run:
    """What one burst did, from the provider's answers and the lab's attempt log."""

    label: str
    sent: int  # emails in the burst
    delivered: int  # distinct recipients the provider accepted
    duplicates: int  # copies accepted beyond the first
    dead_letters: int  # messages Dramatiq gave up on, for any reason
    dead_for_550: int  # of those, the ones whose address the provider refused for good
    deliverable: int  # emails in the burst whose address exists (never answered 550)
    attempts: int  # runs of the actor, waits included
    waits: int  # attempts that ended in a wait for the limit (not a failure)
    most_retries: int  # the most retries one message spent (Dramatiq's count)
    answers: tuple[Answer, ...]  # every answer of the provider, oldest first
    accepted_at: tuple[float, ...]  # when the provider accepted each recipient it counted
    start: float  # time.perf_counter() when the burst was sent
    seconds: float  # from the burst to the last answer
    limit: int  # the provider's limit

    @property
    def refused(self) -> int:
        """How many times the provider answered 421 (slow down)."""
        return sum(1 for a in self.answers if a.code == SLOW_DOWN)

    @property
    def tries(self) -> list[float]:
        """When each send reached the provider: accepted, or refused with 421 (a 550 is no send).

        Both are the moments the provider decided (``RCPT TO``), so the count of
        accepted ones in any second never exceeds its limit.
        """
        return sorted([a.at for a in self.answers if a.code == SLOW_DOWN] + list(self.accepted_at))

    @property
    def busiest_second(self) -> int:
        """The most sends the provider saw in any one-second span."""
        return peak_per_window(self.tries)

    def report(self, *, provider: bool = True) -> str:
        """A few lines that stay the same from run to run where the outcome is clear-cut.

        Counts print as numbers when they are 0 or the whole burst, and as a
        share otherwise (shares vary from run to run; nbval masks them).
        ``provider=False`` leaves out the provider's 421s and busiest second,
        for a run where they depend on where in the clock second it started.
        """
        busiest = self.busiest_second
        over = ("within the limit" if busiest <= self.limit
                else f"over the limit ({fmt_ratio(busiest / self.limit)} of it)")
        rows = [
            ("emails delivered", f"{_count_or_share(self.delivered, self.deliverable)} of the "
                                 f"{self.deliverable} with a real mailbox"),
            ("delivered twice", _count_or_share(self.duplicates, self.sent)),
            ("dead letters for a 550", str(self.dead_for_550)),
            ("other dead letters", _count_or_share(self.dead_letters - self.dead_for_550,
                                                   self.sent)),
            *([("provider's 421 answers", f"{_count_or_share(self.refused, len(self.answers))} "
                                          "of its answers"),
               ("busiest second, provider", over)] if provider else []),
            ("most retries one job spent", str(self.most_retries)),
            ("took", fmt_duration(self.seconds)),
        ]
        width = max(len(name) for name, _ in rows) + 1
        return "\n".join(
            [f"{self.label}: {self.sent} emails at once, provider's limit {self.limit} a second"]
            + [f"  {(name + ':').ljust(width)} {value}" for name, value in rows])


def burst(lab: RetryLab, smtp: FlakySmtp, actor: Actor, n: int = BURST, *, label: str,
          timeout: float = 15.0, wait_for: type[BaseException] | None = None) -> Run:
    """Send ``n`` emails at once through ``actor``; wait until each is delivered or dead.

    ``wait_for`` is the exception class an actor raises to wait for the
    limit: attempts that end with it count as waits, not failures.
    """
    start = time.perf_counter()
    for address in addresses(n):
        actor.send(address)
    lab.wait(timeout=timeout, what=f"{n} emails to be delivered or dead-lettered")
    answers = tuple(smtp.answers)
    recipients = [m.recipient for m in smtp.inbox]
    attempts = lab.attempts(actor.actor_name)
    dead = lab.dead_letters()
    bounced = {a.recipient for a in answers if a.code == NO_SUCH_MAILBOX}
    return Run(
        label=label, sent=n, delivered=len(set(recipients)),
        duplicates=len(recipients) - len(set(recipients)),
        dead_letters=len(dead), deliverable=n - len(bounced & set(addresses(n))),
        dead_for_550=sum(1 for letter in dead if letter.message.args[:1] and
                         str(letter.message.args[0]).lower() in bounced),
        attempts=len(attempts),
        waits=sum(1 for a in attempts if wait_for is not None and a.error is not None
                  and a.error.split(":")[0] == wait_for.__name__),
        most_retries=max((a.number - 1 for a in attempts), default=0),
        answers=answers, accepted_at=tuple(smtp.counted), start=start,
        seconds=max([a.at for a in answers] + [start]) - start,
        limit=smtp.rate_limit)


def clock_second_leak(limiter: WindowRateLimiter, *, before: float = 0.15,
                      after: float = 0.15) -> tuple[int, float]:
    """Acquire ``limiter`` as fast as possible from ``before`` s ahead of a clock second's
    turn to ``after`` s past it; return how many acquisitions it granted, and over how long.

    Waits up to a second for the turn. Each grant is a real call to the limiter's backend.
    """
    now = time.time()
    turn = math.floor(now) + 1 if now % 1 < 1 - before else math.floor(now) + 2
    time.sleep(max(0.0, turn - before - time.time()))
    granted, first, last = 0, 0.0, 0.0
    while time.time() < turn + after:
        with limiter.acquire(raise_on_failure=False) as acquired:
            if acquired:
                last = time.time()
                first = first or last
                granted += 1
    return granted, last - first


def peak_per_window(times: Sequence[float], window: float = RATE_WINDOW) -> int:
    """The most events in any span of ``window`` seconds."""
    ordered, most, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def per_window_series(times: Sequence[float], start: float, end: float, *, step: float = 0.01,
                      window: float = RATE_WINDOW) -> tuple[list[float], list[int]]:
    """At each ``step`` from ``start`` to ``end``: how many events in the second before it."""
    ordered = sorted(times)
    xs, ys, first, last = [], [], 0, 0
    t = start
    while t <= end + step / 2:
        while last < len(ordered) and ordered[last] <= t:
            last += 1
        while first < last and ordered[first] <= t - window:
            first += 1
        xs.append(t - start)
        ys.append(last - first)
        t += step
    return xs, ys


def plot_rates(runs: Sequence[Run]) -> Figure:
    """One panel per run: attempts and accepted emails in the last second, against the limit."""
    fig, axes = plt.subplots(1, len(runs), figsize=(9, 3.2), dpi=DPI, sharey=True, squeeze=False)
    end = max((run.seconds for run in runs), default=1.0) + 0.3
    top = max([run.busiest_second for run in runs] + [run.limit for run in runs]) * 1.15
    for ax, run in zip(axes[0], runs):
        tried = run.tries
        accepted = run.accepted_at
        xs, ys = per_window_series(tried, run.start, run.start + end)
        ax.plot(xs, ys, color="tab:orange", linewidth=1.2, label="sends tried, last second")
        xs, ys = per_window_series(accepted, run.start, run.start + end)
        ax.plot(xs, ys, color="tab:green", linewidth=1.2, label="accepted, last second")
        ax.axhline(run.limit, color="tab:red", linestyle="--", linewidth=0.9,
                   label=f"provider's limit ({run.limit}/s)")
        ax.set_title(run.label, fontsize="small")
        ax.set_xlim(0, end)
        ax.set_ylim(0, top)
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("sends in the last second")
    fig.supxlabel("seconds since the burst", fontsize="small", y=0.11)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    # fixed margins: tight_layout would lay the five panels' ticks out twice (it costs ~0.5 s)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.27, wspace=0.08)
    return fig


def rate_lab_leftovers(smtps: Sequence[FlakySmtp], labs: Sequence[RetryLab], threads_before: int) -> str:
    """What a section left running: SMTP servers, workers, Redis keys, extra threads."""
    servers = sum(1 for smtp in smtps if smtp.running)
    workers = sum(1 for lab in labs if lab.worker is not None)
    keys = 0
    for lab in labs:
        client = redis.Redis.from_url(lab.url)
        try:
            keys += sum(1 for _ in client.scan_iter(match=f"{lab.namespace}*", count=500))
        finally:
            client.close()
    deadline = time.monotonic() + 2.0  # a stopped worker's threads take a moment to exit
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.02)
    threads = max(0, threading.active_count() - threads_before)
    total = servers + workers + keys + threads
    return (f"left behind: {total} ({servers} SMTP servers, {workers} workers, "
            f"{keys} Redis keys, {threads} threads)")


def _count_or_share(part: int, whole: int) -> str:
    if whole == 0 or part in (0, whole):
        return str(part)
    return fmt_share(part, whole)
