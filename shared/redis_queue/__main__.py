"""Run one worker process: ``python -m shared.redis_queue --prefix defer:3f9a1c2e --name w1``.

It reads :class:`~shared.settings.Settings` (the store, Redis, the mail
provider) from ``DEFER_*`` environment variables, takes jobs until SIGTERM
or SIGINT, then finishes the job in hand and exits.
"""

from __future__ import annotations

import argparse
import signal
import sys

from shared.redis_queue.queue import RedisQueue
from shared.redis_queue.worker import Worker
from shared.settings import Settings
from shared.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.redis_queue",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True, help="the queue's key prefix in Redis")
    parser.add_argument("--name", required=True, help="this worker's name, unique in the queue")
    parser.add_argument("--style", choices=("naive", "reliable"), default="reliable")
    parser.add_argument("--heartbeat-ttl", type=float, default=5.0,
                        help="seconds after its last heartbeat that a worker counts as dead")
    parser.add_argument("--idempotent", action="store_true",
                        help="run each job id at most once (SET NX EX before the work)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    if not settings.store_path or not settings.redis_url:
        parser.error("set DEFER_STORE_PATH and DEFER_REDIS_URL (Settings.to_env() does)")
    worker = Worker(RedisQueue(settings.redis_url, args.prefix), args.name,
                    Store(settings.store_path), settings,
                    heartbeat_ttl=args.heartbeat_ttl, idempotent=args.idempotent)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    if args.style == "naive":
        worker.run_naive()
    else:
        worker.run_reliable()
    # Stopped cleanly. At shutdown CPython puts back the default action of any signal
    # it had a Python handler for, so a late SIGTERM would end us with -15: ignore it
    # (an ignored signal stays ignored through shutdown).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
