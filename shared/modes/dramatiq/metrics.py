"""Prometheus metrics for the ``dramatiq`` mode's worker groups (lesson 07), off unless asked.

Dramatiq's ``Prometheus`` middleware (``dramatiq[prometheus]``,
``dramatiq/middleware/prometheus.py``) reads three environment variables
once, when it is imported:

- ``dramatiq_prom_host``: the address its exposition server binds. Its
  default, ``0.0.0.0``, answers on every network interface: anyone who can
  reach the machine reads your queue names and job counts. This module
  always passes ``127.0.0.1``; let Prometheus scrape through a proxy or a
  private network.
- ``dramatiq_prom_port``: the port (default 9191). The server is a process
  forked by each ``dramatiq`` main process, so one per *group*: two groups on
  one machine need two ports, or the second one's server fails to bind.
- ``dramatiq_prom_db``: the folder of the worker processes' metric files
  (prometheus_client's multiprocess mode, one file per process and kind of
  metric). Dramatiq never deletes it, so whoever starts the group must: the
  mode keeps each group's folder inside its log folder, removed on close.

The mode sets :data:`METRICS_ENV` and the three variables per group
(:func:`group_env`); the actors module calls :func:`add_metrics`, which adds
the middleware only when :data:`METRICS_ENV` says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
from dramatiq import Broker

from shared.modes.dramatiq.workers import WorkerGroup
from shared.net import free_port

METRICS_ENV = "DEFER_DRAMATIQ_METRICS"
HOST = "127.0.0.1"


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this worker process should export metrics (the mode said ``1``)."""
    return environ.get(METRICS_ENV) == "1"


def add_metrics(broker: Broker, environ: Mapping[str, str] = os.environ) -> bool:
    """Add Dramatiq's Prometheus middleware to ``broker`` if :func:`enabled`; say whether."""
    if not enabled(environ):
        return False
    # Imported here, not at the top: the module reads dramatiq_prom_* (and creates its folder)
    # when imported, and a process without metrics must not.
    from dramatiq.middleware.prometheus import Prometheus  # noqa: PLC0415

    broker.add_middleware(Prometheus())
    return True


def group_env(port: int, folder: Path) -> dict[str, str]:
    """The environment that turns metrics on for one group: its port, its files' folder."""
    return {METRICS_ENV: "1", "dramatiq_prom_host": HOST, "dramatiq_prom_port": str(port),
            "dramatiq_prom_db": str(folder)}


class MeteredGroup(WorkerGroup):
    """A :class:`WorkerGroup` whose processes export metrics on ``127.0.0.1:port``."""

    def __init__(self, *args, port: int, metrics_folder: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.port, self.metrics_folder = port, metrics_folder
        metrics_folder.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    #: Delete the files of the group's earlier run at each (re)start. Every process of that run
    #: is dead by then (Dramatiq's main process stops them all when one dies), but a killed one
    #: never removed its in-progress gauge, which would read "busy" forever. Counters restart
    #: from 0, which Prometheus's rate() and increase() expect after a restart.
    wipe_on_start = True

    def start(self, env: dict[str, str]) -> None:
        if self.wipe_on_start:
            for path in self.metric_files():
                path.unlink(missing_ok=True)
        super().start({**env, **group_env(self.port, self.metrics_folder)})

    def worker_processes(self) -> list[psutil.Process]:
        """The worker processes, without the exposition server: Dramatiq's main process forks
        it too (``Middleware.forks``, ``dramatiq/cli.py``), so it looks like one more worker."""
        return [p for p in super().worker_processes() if not self._serves_metrics(p)]

    def _serves_metrics(self, process: psutil.Process) -> bool:
        try:
            return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
                       for c in process.net_connections(kind="tcp"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def metric_files(self) -> list[Path]:
        """The metric files the group's processes wrote so far (restarts add files)."""
        return sorted(self.metrics_folder.glob("*.db"))


def group_factory(metrics: int, folder: Path) -> Callable[..., WorkerGroup]:
    """What the mode builds its groups with: :class:`MeteredGroup` (a free port and a metrics
    folder inside ``folder`` each) when ``metrics`` is 1, a plain :class:`WorkerGroup` when 0."""
    if metrics not in (0, 1) or isinstance(metrics, bool):
        raise ValueError(f"the dramatiq mode's option metrics must be 0 or 1, got {metrics!r}")
    def metered(name: str, queues: tuple[str, ...], processes: int, threads: int,
                log_folder: Path) -> WorkerGroup:
        return MeteredGroup(name, queues, processes, threads, log_folder, port=free_port(),
                            metrics_folder=folder / f"metrics-{name}")

    return metered if metrics else WorkerGroup


def metrics_urls(groups: list[WorkerGroup]) -> dict[str, str]:
    """Each metered group's name and metrics address (none when metrics are off)."""
    return {group.name: group.metrics_url for group in groups if isinstance(group, MeteredGroup)}
