"""The module every worker process of lesson 05 imports.

In production you would run a worker group with the ``dramatiq`` command::

    dramatiq shared.priorities.worker --processes 1 --threads 1 --queues urgent

``python -m shared.priorities.worker --threads 1 --queues urgent`` runs the
same :class:`dramatiq.Worker`, with the same flags, minus the supervising
parent process: it starts and stops in a fraction of a second, where the
command's shutdown takes one to two seconds (its processes poll for the
stop signal once a second). The lesson runs many short designs, so it uses
this; ``run_design(..., cli=True)`` uses the real command instead.

Both read everything from the environment that
:func:`shared.priorities.run.run_design` sets: the Redis URL and mail
provider (``DEFER_*``, see :mod:`shared.settings`), the run's key namespace
and the design (``DEFER_PRIORITIES_*``), ``dramatiq_queue_prefetch`` and
``dramatiq_worker_timeout``. As Dramatiq requires, the broker is set before
any actor is declared.

So that the lesson can tell a message still *in Redis* from one the worker
already *holds*, each consumer notes the moment it takes a message out of
Redis (``<namespace>:fetched``), through :func:`record_fetches`. It changes
no decision the consumer makes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

import dramatiq
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from shared.modes.dramatiq.broker import make_broker
from shared.priorities.actors import (DESIGN_VAR, NAMESPACE_VAR, NEWSLETTER, RESET, broker_config,
                                     declare_actors, fetched_key)
from shared.priorities.design import Design
from shared.settings import Settings

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _from_environment() -> tuple[Settings, str, Design]:
    missing = [name for name in ("DEFER_REDIS_URL", NAMESPACE_VAR, DESIGN_VAR)
               if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set: this module is started by "
            "shared.priorities.run_design(), which sets them for its workers")
    return Settings.from_env(), os.environ[NAMESPACE_VAR], Design.from_json(os.environ[DESIGN_VAR])


def record_fetches(broker: RedisBroker) -> None:
    """Note, for each batch the broker's consumers take out of Redis, when it left.

    Dramatiq's Redis consumer gets its messages through ``broker.do_fetch``
    (``_RedisConsumer.__next__``). This wraps that one call: the batch is
    noted in one Redis call, then handed on unchanged, before the consumer
    hands any of it to the worker. Nothing the consumer decides changes.
    """
    fetch = getattr(broker, "do_fetch")  # RedisBroker.__getattr__ builds do_* calls  # noqa: B009
    key = fetched_key(broker.namespace)

    def do_fetch(queue_name: str, prefetch: int) -> list[bytes]:
        batch = fetch(queue_name, prefetch)
        if batch:
            now = time.perf_counter()
            notes = []
            for data in batch:
                message = Message.decode(data)
                kind = RESET if message.actor_name == "send_reset_email" else NEWSLETTER
                notes.append(json.dumps({"kind": kind, "fetched": now,
                                         "number": message.args[1] if kind == NEWSLETTER else 0}))
            broker.client.rpush(key, *notes)
        return batch

    setattr(broker, "do_fetch", do_fetch)  # noqa: B010 - found before __getattr__ is asked


settings, namespace, design = _from_environment()
broker = make_broker(settings.redis_url, broker_config(namespace))
record_fetches(broker)
dramatiq.set_broker(broker)
actors = declare_actors(broker, design, settings)


def main(argv: list[str] | None = None) -> None:
    """Run one Worker until SIGTERM or SIGINT, then stop it cleanly."""
    parser = argparse.ArgumentParser(description="One lesson-05 worker process.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queues", nargs="+", required=True)
    args = parser.parse_args(argv)
    # Block the stop signals before any thread starts: threads inherit the
    # mask, so only sigwait() below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    worker = dramatiq.Worker(broker, queues=set(args.queues), worker_threads=args.threads)
    broker.emit_after("process_boot")  # as the dramatiq command does
    worker.start()
    signal.sigwait(STOP_SIGNALS)
    worker.stop()
    broker.close()


if __name__ == "__main__":
    main()
