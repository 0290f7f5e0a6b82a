"""Run the signup app in the foreground, outside Jupyter: ``make serve``.

Starts what the chosen mode needs (the slow SMTP sink; Redis when a mode
queues jobs there), serves until Ctrl-C or SIGTERM, then stops all of it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from contextlib import ExitStack

from shared.app import MODES, create_app, state
from shared.smtp_sink import SmtpSink
from shared.web import BackgroundServer, PortInUse

NEEDS_REDIS: frozenset[str] = frozenset()  # later lessons' modes join this set


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a plain `kill` cleans up like Ctrl-C
    with ExitStack() as stack:
        try:
            sink = stack.enter_context(SmtpSink(delay=args.email_delay, on_delivery=_print_delivery))
            if args.mode in NEEDS_REDIS:
                from shared.redis_server import redis_url  # noqa: PLC0415 - only when needed
                print(f"redis:   {redis_url()}")
            app = create_app(args.mode, smtp_host=sink.host, smtp_port=sink.port)
            server = BackgroundServer(app, threaded=not args.single_thread, host=args.host,
                                      port=args.port, on_request=_print_request)
            server.listen()
            stack.callback(server.stop)
        except (PortInUse, OSError) as exc:
            print(f"error: {exc.strerror or exc}", file=sys.stderr)
            return 2
        _print_banner(args, server, sink)
        try:
            server.serve_forever()  # werkzeug returns quietly on Ctrl-C
        except KeyboardInterrupt:
            pass
        # A second Ctrl-C must not cut the clean-up short: it is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping: web server, SMTP sink"
              + (", Redis" if args.mode in NEEDS_REDIS else ""), flush=True)
        pending = state(app).background.pending
        if pending:
            print(f"waiting for {pending} background job(s) to finish...", flush=True)
            state(app).background.wait(timeout=10)
    print("stopped.", flush=True)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make serve", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="blocking")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--email-delay", type=float, default=0.5,
                        help="seconds the SMTP sink takes to accept a message (default 0.5)")
    parser.add_argument("--single-thread", action="store_true",
                        help="answer one request at a time (default: a thread per request)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    return args


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_banner(args, server: BackgroundServer, sink: SmtpSink) -> None:
    kind = "single-threaded" if args.single_thread else "threaded"
    print(f"mode:    {args.mode} ({kind} server)\n"
          f"app:     {server.url}\n"
          f"smtp:    {sink.host}:{sink.port} (answers after {sink.delay:g} s)\n"
          f"try:     curl -i -X POST {server.url}/signup -H 'Content-Type: application/json' "
          f"-d '{{\"email\": \"ada@example.com\"}}'\n"
          f"Ctrl-C stops everything.", flush=True)


def _print_request(method: str, path: str, status) -> None:
    print(f"{time.strftime('%H:%M:%S')} {method} {path} -> {status}", flush=True)


def _print_delivery(message) -> None:
    print(f"{time.strftime('%H:%M:%S')} mail to {', '.join(message.recipients)}: "
          f"{message.subject!r}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
