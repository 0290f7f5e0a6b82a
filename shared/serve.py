"""Run the signup app in the foreground, outside Jupyter: ``make serve``.

Starts what the chosen mode needs (the slow SMTP sink; Redis and workers
when a mode's runner needs them), serves until Ctrl-C or SIGTERM, then stops
in an order that drops no request: stop accepting, let requests in flight
finish, close the runner (its jobs finish or go back to the queue), and only
then stop the SMTP sink and Redis.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any

import redis as redis_client
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.app import create_app, state
from shared.modes import MODES, redis_url_for
from shared.net import PortInUse
from shared.redis_queue.demo import persistence
from shared.redis_server import RedisUnavailable, mask_password
from shared.smtp_sink import SmtpSink, refuse_share
from shared.web import BackgroundServer

DRAIN_SECONDS = 10.0
_say_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line; lines from different threads never interleave."""
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a plain `kill` cleans up like Ctrl-C
    _print_mode_messages()
    with ExitStack() as stack:
        app = None
        try:
            refuse = refuse_share(args.refuse_share) if args.refuse_share else None
            sink = stack.enter_context(SmtpSink(delay=args.email_delay, refuse=refuse,
                                                on_delivery=_print_delivery))
            app = create_app(args.mode, smtp_host=sink.host, smtp_port=sink.port,
                             redis_url=redis_url_for(args.mode), **_mode_options(args))
            server = BackgroundServer(app, threaded=not args.single_thread, host=args.host,
                                      port=args.port, on_request=_print_request).listen()
        except (PortInUse, OSError, RedisUnavailable, ValueError) as exc:
            if app is not None:  # the runner started its workers: stop them, drop its keys
                state(app).close(timeout=0)
            print(f"error: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
        try:  # a Ctrl-C while the banner prints cleans up too
            _print_banner(args, server, sink, app)
            server.serve_forever()  # werkzeug returns quietly on Ctrl-C
        except KeyboardInterrupt:
            pass
        # A second Ctrl-C must not cut the clean-up short: every step is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(app, server)
    say("stopped.")
    return 0


def _stop(app, server: BackgroundServer) -> None:
    in_flight = server.in_flight.count
    say("\nstopping: no new requests" + (f"; {in_flight} in flight" if in_flight else ""))
    left = server.stop(drain=DRAIN_SECONDS)
    if left:
        say(f"{left} request(s) still unanswered after {DRAIN_SECONDS:g} s")
    unfinished = state(app).store.counts()
    pending = unfinished["queued"] + unfinished["running"]
    if pending:
        say(f"waiting for {pending} job(s) to finish...")
    closed = state(app).close(timeout=DRAIN_SECONDS)
    say(f"jobs: {closed}")
    say("stopping: SMTP sink" + (", Redis" if state(app).settings.redis_url else ""))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make serve", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=list(MODES), default="blocking")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on (default 8000); 0: one the OS picks, "
                             "named in the banner's app: and page: lines")
    parser.add_argument("--email-delay", type=float, default=0.5,
                        help="seconds the SMTP sink takes to accept a message (default 0.5)")
    parser.add_argument("--refuse-share", type=float, default=0.0, metavar="SHARE",
                        help="the SMTP sink refuses this share of attempts with 451 "
                             "(e.g. 0.5), to watch retries")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker threads or processes, for the modes that have workers")
    parser.add_argument("--queue-size", type=int, default=None,
                        help="how many jobs may wait in the queue, for the modes that bound it")
    parser.add_argument("--max-backlog", type=int, default=None, metavar="SECONDS",
                        help="dramatiq: answer 503 while more than this many seconds of work "
                             "are queued (default 0: never)")
    parser.add_argument("--nice", type=int, default=None,
                        help="dramatiq: run the worker groups at this CPU priority, "
                             "0 (the web's) to 19 (the lowest)")
    parser.add_argument("--single-thread", action="store_true",
                        help="answer one request at a time (default: a thread per request)")
    args = parser.parse_args(argv)
    if not 0 <= args.refuse_share < 1:
        parser.error(f"--refuse-share must be at least 0 and below 1, got {args.refuse_share}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    return args


def _mode_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line that the mode takes (others: a clear error)."""
    given = {"workers": args.workers, "queue_size": args.queue_size,
             "max_backlog_seconds": args.max_backlog, "nice": args.nice}
    if args.mode == "dramatiq":
        given["metrics"] = 1  # Prometheus on 127.0.0.1, printed in the banner (lesson 07)
    options = {name: value for name, value in given.items() if value is not None}
    if "outbox" in MODES[args.mode].options:
        options["outbox"] = 1  # lesson 07: a signup's jobs go through the outbox
    return options


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_banner(args, server: BackgroundServer, sink: SmtpSink, app) -> None:
    settings, state_runner_line = state(app).settings, state(app).runner.describe()
    kind = "single-threaded" if args.single_thread else "threaded"
    redis = (f"redis:   {mask_password(settings.redis_url)}\n"
             f"         persistence: {persistence_line(settings.redis_url)}\n"
             if settings.redis_url else "")
    say(f"mode:    {args.mode} ({kind} server)\n"
        f"jobs:    {state_runner_line}\n"
        f"app:     {server.url}\n"
        f"page:    {server.url}/ (sign up in a browser, watch the jobs)\n"
        f"smtp:    {sink.host}:{sink.port} (answers after {sink.delay:g} s"
        f"{f', refuses {args.refuse_share:.0%} of attempts with 451' if args.refuse_share else ''})\n"
        f"{redis}"
        f"{_metrics_lines(state(app).runner)}"
        f"try:     curl -i -X POST {server.url}/signup -H 'Content-Type: application/json' "
        f"-d '{{\"email\": \"ada@example.com\"}}'\n"
        f"status:  curl {server.url}/jobs/<id from the answer>\n"
        f"Ctrl-C stops everything.")


def _metrics_lines(runner) -> str:
    """One ``metrics:`` line per worker group that exports Prometheus metrics (lesson 07)."""
    urls = getattr(runner, "metrics_urls", {})
    return "".join(f"metrics: {url} ({name} group, Prometheus; bound to 127.0.0.1 only)\n"
                   for name, url in urls.items())


def persistence_line(url: str) -> str:
    """What the Redis at ``url`` keeps through a restart, as it says itself (CONFIG GET)."""
    client = redis_client.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1,
                                         retry=Retry(NoBackoff(), 0))
    try:
        return describe_persistence(persistence(client))
    finally:
        client.close()


def describe_persistence(found: dict[str, str] | str) -> str:
    """Settings read by :func:`shared.redis_queue.demo.persistence` in one line:
    ``none (appendonly no, save '')``."""
    if isinstance(found, str):
        return f"unknown: the server would not say ({found})"
    aof = found.get("appendonly") == "yes"
    kind = "append-only file" if aof else "snapshots" if found.get("save") else "none"
    fsync = f", appendfsync {found.get('appendfsync')}" if aof else ""
    return f"{kind} (appendonly {found.get('appendonly')}{fsync}, save {found.get('save')!r})"


class _SayHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(f"{time.strftime('%H:%M:%S')} {self.format(record)}")


def _print_mode_messages() -> None:
    """What a mode's runner logs (a worker died, jobs recovered) goes to the console."""
    modes_log = logging.getLogger("shared.modes")
    modes_log.setLevel(logging.INFO)
    modes_log.addHandler(_SayHandler())


def _print_request(method: str, path: str, status) -> None:
    say(f"{time.strftime('%H:%M:%S')} {method} {path} -> {status}")


def _print_delivery(message) -> None:
    say(f"{time.strftime('%H:%M:%S')} mail to {', '.join(message.recipients)}: "
        f"{message.subject!r}")


if __name__ == "__main__":
    sys.exit(main())
