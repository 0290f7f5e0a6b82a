"""Benchmark the signup modes side by side: ``make bench``.

Not a test: it prints what this machine measures, so a claim such as
"not waiting answers about as fast as having no jobs" comes with a command.
Each trial starts fresh apps, fires the same burst at each mode and
reports medians; the ratios are what to compare between machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from shared.app import create_app, state
from shared.fmt import fmt_duration, fmt_ratio
from shared.jobs import render_avatar
from shared.load import LoadResult, run_load
from shared.modes import MODES, redis_url_for
from shared.smtp_sink import SmtpSink
from shared.web import BackgroundServer


def burst(mode: str, sink: SmtpSink, clients: int, trial: int) -> LoadResult:
    """Fire ``clients`` signups at once at a fresh threaded app in ``mode``."""
    app = create_app(mode, smtp_host=sink.host, smtp_port=sink.port,
                     redis_url=redis_url_for(mode))
    with BackgroundServer(app, threaded=True) as server:
        result = run_load(f"{server.url}/signup", n=clients, concurrency=clients, label=mode,
                          progress=False,
                          json_body=lambda i: {"email": f"{mode}{trial}-{i}@example.com"})
        state(app).close(timeout=120)
    return result


def _lone_avatar_seconds() -> float:
    render_avatar("warm-up@example.com")
    start = time.perf_counter()
    render_avatar("alone@example.com")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--email-delay", type=float, default=0.25)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                        help="modes to measure (default: all of them)")
    args = parser.parse_args(argv)
    p50s: dict[str, list[float]] = {mode: [] for mode in dict.fromkeys(["bare", *args.modes])}
    alone = args.email_delay + _lone_avatar_seconds()
    with SmtpSink(delay=args.email_delay) as sink:
        for trial in range(args.trials):
            for mode in p50s:
                result = burst(mode, sink, args.clients, trial)
                p50s[mode].append(result.summary().p50)
            print(f"trial {trial + 1}: " + ", ".join(
                f"{mode} p50 {fmt_duration(values[-1])}" for mode, values in p50s.items()),
                flush=True)
    print(f"\n{args.trials} trials, {args.clients} clients at once, email delay "
          f"{fmt_duration(args.email_delay)}, threaded server; one signup's jobs alone take "
          f"{fmt_duration(alone)}")
    width = max(map(len, p50s))
    for mode, values in p50s.items():
        line = f"  {mode:<{width}}  median p50 {fmt_duration(statistics.median(values)):>8}"
        if mode != "bare":
            ratios = [m / b for m, b in zip(values, p50s["bare"])]
            line += (f"  / bare: median {fmt_ratio(statistics.median(ratios))} "
                     f"(range {fmt_ratio(min(ratios))} to {fmt_ratio(max(ratios))})")
        if "blocking" in p50s and mode not in ("bare", "blocking"):
            faster = statistics.median(p50s["blocking"]) / statistics.median(values)
            line += f", {fmt_ratio(faster)} faster than blocking"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
