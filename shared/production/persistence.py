"""What a Redis broker keeps when its server is killed, and what keeping it costs.

Dramatiq's queue on Redis *is* the server's memory. A server killed with
SIGKILL comes back with whatever its persistence settings put on disk:
nothing (the course's embedded server), its last snapshot (Redis's built-in
``save`` default), or its append-only file (``appendonly yes``), whose
``appendfsync`` says how often the file is forced to the disk.

:func:`crash` sends Dramatiq messages from a few threads, SIGKILLs the
server mid-stream, starts it again on the same files and counts which
acknowledged messages came back. :func:`enqueue_costs` times one enqueue
on each setting, alternately, in the same run.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import psutil
import redis
from matplotlib.figure import Figure
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.fmt import fmt_duration, fmt_ratio, fmt_share
from shared.job import new_jobs
from shared.modes.dramatiq.broker import BrokerConfig, job_message, make_broker, queue_of
from shared.plots import DPI
from shared.redis_queue.demo import persistence
from shared.redis_server import EmbeddedRedis
from shared.processes import wait_until

KIND = "welcome_email"
SENDER_THREAD = "persistence-sender"
DATA_DIR_PREFIX = f"redis-data-{os.getpid()}-"


@dataclass(frozen=True)
class Persistence:
    """One way to run the server: its options, and what its docs promise a killed process loses.

    ``config`` values of None leave an option at the server's built-in
    default. ``promised_loss`` is the most acknowledged writes a SIGKILL may
    lose (None: all since the last snapshot, no bound).
    """

    name: str
    config: Mapping[str, str | None]
    promised_loss: int | None
    promise: str


OFF = Persistence("off (the embedded server)", {"save": "", "appendonly": "no"}, None,
                  "nothing is on disk")
#: Redis's own defaults when no config file sets them: snapshots only (Debian's redis.conf leaves them).
DEFAULTS = Persistence("Redis's built-in defaults", {"save": None, "appendonly": None}, None,
                       "what its last snapshot holds")
#: redis.conf: "a single write if something wrong with the Redis process itself happens".
EVERYSEC = Persistence("appendonly, fsync every second",
                       {"save": "", "appendonly": "yes", "appendfsync": "everysec"}, 1,
                       "at most one write")
#: redis.conf: "always: fsync after every write to the append only log. Slow, Safest."
ALWAYS = Persistence("appendonly, fsync every write",
                     {"save": "", "appendonly": "yes", "appendfsync": "always"}, 0,
                     "no acknowledged write")
SETTINGS = (OFF, DEFAULTS, EVERYSEC, ALWAYS)


@dataclass(frozen=True)
class CrashRun:
    """What one SIGKILL of the server cost: sends acknowledged before it, and what came back."""

    persistence: Persistence
    live: dict[str, str] | str  # CONFIG GET save/appendonly/appendfsync, read from the server
    acknowledged: int
    kept: int  # acknowledged messages in Dramatiq's queue after the restart
    unacknowledged_kept: int = 0  # sends whose answer the kill cut off, yet were written

    @property
    def lost(self) -> int:
        return self.acknowledged - self.kept

    @property
    def kept_its_promise(self) -> bool:
        promised = self.persistence.promised_loss
        return True if promised is None else self.lost <= promised

    def verdict(self) -> str:
        """One line that reads the same on every run that behaves as the docs promise."""
        share = f"lost {fmt_share(self.lost, self.acknowledged)} of the acknowledged messages"
        if self.persistence.promised_loss is None:
            outcome = ("all of them: nothing on disk to load" if self.kept == 0 else
                       "those sent since its last snapshot")
            return f"{self.persistence.name}: {share}, {outcome}"
        keeps = "kept" if self.kept_its_promise else "BROKE"
        return (f"{self.persistence.name}: {share}; it promises to lose "
                f"{self.persistence.promise}: {keeps} its promise")


@dataclass
class _Sent:
    """Sends from several threads: the Redis ids of those the server acknowledged."""

    acknowledged: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


@contextmanager
def data_dir() -> Iterator[Path]:
    """A fresh directory for a server's files, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def crash(setting: Persistence, *, kill_after: int = 200, senders: int = 4,
          timeout: float = 20.0) -> CrashRun:
    """Send messages from ``senders`` threads, SIGKILL the server once ``kill_after``
    were acknowledged, start it again on the same files, count what came back."""
    with data_dir() as path:
        server = EmbeddedRedis(config=setting.config, data_dir=path)
        try:
            server.start()
            live = _live_settings(server.url)
            config = BrokerConfig.fresh(maintenance_chance=0)
            sent = _send_until_killed(server, config, kill_after, senders, timeout)
            server.start()  # same port, same files: it loads what they kept
            found = _queued_ids(server.url, config)
        finally:
            server.stop()
    acknowledged = set(sent.acknowledged)
    return CrashRun(setting, live, len(acknowledged), len(found & acknowledged),
                    len(found - acknowledged))


def _send_until_killed(server: EmbeddedRedis, config: BrokerConfig, kill_after: int,
                       senders: int, timeout: float) -> _Sent:
    broker = make_broker(server.url, config)
    sent = _Sent()

    def send() -> None:
        while True:
            message = job_message(new_jobs("crash@example.com", "crash", (KIND,))[0])
            try:
                stored = broker.enqueue(message)
            except Exception as error:  # noqa: BLE001 - kept for the caller, not printed on stderr
                # After the kill a ConnectionError: this send may or may not have been stored.
                with sent.lock:
                    sent.errors.append(error)
                return
            with sent.lock:
                sent.acknowledged.append(stored.options["redis_message_id"])

    threads = [threading.Thread(target=send, name=f"{SENDER_THREAD}-{n}", daemon=True)
               for n in range(senders)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: sent.count() >= kill_after, timeout,
                   f"{kill_after} acknowledged sends before the kill", interval=0.001,
                   problem=lambda: _all_stopped(threads, sent))
    finally:
        server.kill()
        for thread in threads:
            thread.join(timeout)
        broker.close()
    alive = [thread.name for thread in threads if thread.is_alive()]
    if alive:
        raise TimeoutError(f"sender threads still running {timeout:g} s after the kill: {alive}")
    return sent


def _all_stopped(threads: Sequence[threading.Thread], sent: _Sent) -> str | None:
    """Why waiting for the kill is pointless: every sender stopped before it."""
    if any(thread.is_alive() for thread in threads):
        return None
    return f"every sender stopped before the kill: {sent.errors[0]!r}" if sent.errors else (
        "every sender stopped before the kill")


def _queued_ids(url: str, config: BrokerConfig) -> set[str]:
    """Ids of the messages Dramatiq's queue holds: in its list, with their payload."""
    queue = f"{config.namespace}:{queue_of(KIND)}"
    client = _client(url)
    try:
        listed = client.lrange(queue, 0, -1)
        payloads = set(client.hkeys(f"{queue}.msgs"))
        return {str(text) for text in listed if text in payloads}
    finally:
        client.close()


def _live_settings(url: str) -> dict[str, str] | str:
    client = _client(url)
    try:
        return persistence(client)
    finally:
        client.close()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5,
                                socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))


@dataclass(frozen=True)
class EnqueueCost:
    """Median seconds of one Dramatiq enqueue on a server with ``persistence``."""

    persistence: Persistence
    seconds: float
    samples: int


def enqueue_costs(settings: Sequence[Persistence] = SETTINGS, *,
                  samples: int = 150) -> list[EnqueueCost]:
    """Time ``samples`` enqueues on a server per setting, one on each in turn (in a
    shuffled order), so all of them see the same machine; report the medians. The first
    setting is the baseline."""
    with ExitStack() as stack:
        brokers = []
        for setting in settings:
            path = stack.enter_context(data_dir())
            server = stack.enter_context(EmbeddedRedis(config=setting.config, data_dir=path))
            broker = make_broker(server.url, BrokerConfig.fresh(maintenance_chance=0))
            stack.callback(broker.close)
            broker.enqueue(_message())  # connect, load the script
            brokers.append(broker)
        times: list[list[float]] = [[] for _ in settings]
        order = list(range(len(brokers)))
        shuffle = random.Random(0).shuffle
        for _ in range(samples):
            # A new order each round: an enqueue right after a slow fsync is slower too,
            # and no setting may always be the one that follows it.
            shuffle(order)
            for index in order:
                message = _message()
                start = time.perf_counter()
                brokers[index].enqueue(message)
                times[index].append(time.perf_counter() - start)
    return [EnqueueCost(setting, statistics.median(spent), samples)
            for setting, spent in zip(settings, times, strict=True)]


def _message():
    return job_message(new_jobs("cost@example.com", "cost", (KIND,))[0])


def cost_lines(costs: Sequence[EnqueueCost]) -> list[str]:
    """One line per setting: its median time per enqueue, and its ratio to the first's."""
    base = costs[0].seconds
    return [f"{cost.persistence.name:32} {fmt_duration(cost.seconds)} per enqueue, "
            f"{fmt_ratio(cost.seconds / base)} as long as {_short(costs[0].persistence)}"
            for cost in costs]


def plot_persistence(runs: Sequence[CrashRun], costs: Sequence[EnqueueCost]) -> Figure:
    """Left: acknowledged messages lost to one SIGKILL. Right: time per enqueue."""
    figure, (lost, spent) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=DPI)
    names = [_short(run.persistence) for run in runs]
    lost.bar(names, [run.acknowledged for run in runs], color="0.85", label="acknowledged")
    lost.bar(names, [run.lost for run in runs], color="tab:red", label="lost at the kill")
    for x, run in enumerate(runs):
        lost.annotate(str(run.lost), (x, run.lost), ha="center", va="bottom", fontsize=8)
    lost.set_title("messages lost to kill -9 of the server", fontsize=10)
    lost.legend(fontsize=8, loc="upper right")
    base = costs[0].seconds
    spent.bar([_short(cost.persistence) for cost in costs],
              [cost.seconds * 1000 for cost in costs], color="tab:blue")
    for x, cost in enumerate(costs):
        spent.annotate(fmt_ratio(cost.seconds / base), (x, cost.seconds * 1000), ha="center",
                       va="bottom", fontsize=8)
    spent.set_ylabel("ms per enqueue (median)")
    spent.set_title("what one enqueue costs", fontsize=10)
    for ax in (lost, spent):
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(y=0.15)
    figure.tight_layout()
    return figure


def _short(setting: Persistence) -> str:
    return {OFF.name: "off", DEFAULTS.name: "snapshots", EVERYSEC.name: "everysec",
            ALWAYS.name: "always"}.get(setting.name, setting.name)


def persistence_leftovers() -> dict[str, int]:
    """What this module's runs left behind: servers, sender threads, data directories."""
    servers = sum(1 for child in psutil.Process().children(recursive=True)
                  if _is_server(child))
    threads = sum(1 for thread in threading.enumerate() if thread.name.startswith(SENDER_THREAD))
    dirs = sum(1 for path in Path(tempfile.gettempdir()).glob(DATA_DIR_PREFIX + "*"))
    return {"servers": servers, "sender threads": threads, "data directories": dirs}


def _is_server(process: psutil.Process) -> bool:
    try:
        return "valkey-server" in process.name() and DATA_DIR_PREFIX in " ".join(process.cmdline())
    except psutil.Error:
        return False
