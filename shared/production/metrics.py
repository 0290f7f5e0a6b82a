"""Lesson 07, section 7: a Dramatiq worker group's Prometheus metrics, scraped and checked.

:func:`scrape` reads one group's ``/metrics`` page (the text Prometheus
itself would read) into plain totals; :class:`Recorder` scrapes it every few
ms during a run; :func:`plot_run` draws what a dashboard would. The counts
to check them against come from the course's own store
(:func:`own_counts`), and the backlog from Redis (:func:`backlog`: the list and
the workers' ``__acks__`` sets).
"""

from __future__ import annotations

import ast
import importlib.util
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import psutil
import redis
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from dramatiq import Message
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from shared.app import state
from shared.job import new_jobs
from shared.modes.dramatiq.mode import DramatiqMode
from shared.plots import DPI

IN_PROGRESS = "dramatiq_messages_inprogress"
PROCESSED = "dramatiq_messages_total"
ERRORS = "dramatiq_message_errors_total"
RETRIES = "dramatiq_message_retries_total"
DEAD = "dramatiq_message_rejects_total"
DURATION_SUM = "dramatiq_message_duration_milliseconds_sum"
DURATION_COUNT = "dramatiq_message_duration_milliseconds_count"


def scrape(url: str, *, queue: str | None = None, by_label: bool = False,
           timeout: float = 2.0) -> dict[str, float]:
    """The samples on a ``/metrics`` page, summed over their labels.

    ``queue``: only samples labelled with that ``queue_name``. ``by_label``:
    keep the queue in the key (``"dramatiq_message_retries_total{email.DQ}"``).
    Histogram buckets are left out. A metric nothing has touched yet is absent:
    read with ``.get(name, 0.0)``.
    """
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return _totals(text, queue, by_label)


def read_folder(folder: Path, *, queue: str | None = None) -> dict[str, float]:
    """What a group's page would serve from the metric files in ``folder``, as :func:`scrape`.

    Dramatiq's page handler (``_metrics_handler.do_GET``) runs prometheus_client's
    ``MultiProcessCollector`` over the folder on every request; this runs the same
    code here, so it works while the group (and its page) is down.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return _totals(generate_latest(registry).decode(), queue, False)


def _totals(text: str, queue: str | None, by_label: bool) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith("_bucket") or name.endswith("_created"):
                continue
            labelled = sample.labels.get("queue_name")
            if queue is not None and labelled != queue:
                continue
            key = f"{name}{{{labelled}}}" if by_label else name
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def wait_metrics(url: str, timeout: float = 15.0) -> dict[str, float]:
    """Scrape ``url`` once it answers: a group's exposition server starts after its workers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return scrape(url)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answered at {url} within {timeout:g} s") from None
            time.sleep(0.05)


@dataclass
class Recorder:
    """Scrapes ``url`` every ``interval`` s in a thread, between ``with`` entry and exit."""

    url: str
    interval: float = 0.05
    queue: str | None = None
    times: list[float] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-recorder", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> Recorder:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._take()  # the last word: after the run

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def _take(self) -> None:
        try:
            sample = scrape(self.url, queue=self.queue)
        except (urllib.error.URLError, ConnectionError):
            return
        self.times.append(time.perf_counter() - self._t0)
        self.samples.append(sample)

    def series(self, name: str) -> list[float]:
        return [sample.get(name, 0.0) for sample in self.samples]


def plot_run(recorder: Recorder, title: str) -> Figure:
    """In progress, retries, dead letters and mean duration against seconds, four panels."""
    fig, axes = plt.subplots(1, 4, figsize=(9.0, 3.2), dpi=DPI, sharex=True)
    t = recorder.times
    panels = [(IN_PROGRESS, "in progress", "tab:blue"), (RETRIES, "retries (total)", "tab:orange"),
              (DEAD, "dead letters (total)", "tab:red")]
    for ax, (name, label, colour) in zip(axes, panels):
        ax.step(t, recorder.series(name), where="post", color=colour)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    sums, counts = recorder.series(DURATION_SUM), recorder.series(DURATION_COUNT)
    axes[3].plot(t, [s / c if c else float("nan") for s, c in zip(sums, counts)], color="tab:green")
    axes[3].set_title("mean duration (ms)", fontsize=9)
    axes[3].set_ylim(bottom=0)
    for ax in axes:
        ax.tick_params(labelsize=8)
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
    fig.supxlabel("seconds", fontsize=8)
    fig.suptitle(title, fontsize=10)
    # fixed margins: tight_layout measures every label, and costs more than the drawing
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.8, wspace=0.3)
    return fig


def dramatiq_mode(app: Any) -> DramatiqMode:
    """The app's runner, which must be the ``dramatiq`` mode."""
    runner = state(app).runner
    if not isinstance(runner, DramatiqMode):
        raise TypeError(f"this needs an app in the dramatiq mode, not {runner.name!r}")
    return runner


def send_emails(app: Any, addresses: Iterable[str]) -> list[str]:
    """Sign each address up and queue its welcome email, as the signup route does, without the avatar
    (an avatar takes seconds of CPU: not what this section measures). Returns the job ids."""
    app_state = state(app)
    ids = []
    for address in addresses:
        jobs = new_jobs(address, "lesson07", kinds=("welcome_email",))
        app_state.store.create_account(address, jobs)
        app_state.runner.submit_all(jobs)
        ids += [job.id for job in jobs]
    return ids


@dataclass(frozen=True)
class OwnCounts:
    """What the course's store says happened: its own count, kept by the status middleware."""

    attempts: int
    retries: int
    failed: int
    done: int


def own_counts(app: Any, job_ids: Iterable[str]) -> OwnCounts:
    store = state(app).store
    jobs = [store.job(job_id) for job_id in job_ids]
    known = [job for job in jobs if job is not None]
    attempts = sum(job.attempts for job in known)
    failed = sum(job.status == "failed" for job in known)
    return OwnCounts(attempts=attempts, retries=attempts - len(known), failed=failed,
                     done=sum(job.status == "done" for job in known))


def listed(app: Any, queue: str) -> int:
    """``LLEN`` of ``queue``: the messages no worker has fetched yet (and only those)."""
    runner = dramatiq_mode(app)
    client = redis.Redis.from_url(runner.settings.redis_url)
    try:
        return int(client.llen(f"{runner.broker_config.namespace}:{queue}"))
    finally:
        client.close()


def _unacked_ids(client: redis.Redis, namespace: str, queue: str) -> list[bytes | str]:
    """The Redis ids of ``queue``'s unacked messages: the list, and the workers' ``__acks__`` sets
    (``dispatch.lua``'s ``fetch`` moves a message from the list to its worker's set)."""
    ids: list[bytes | str] = list(client.lrange(f"{namespace}:{queue}", 0, -1))
    for key in client.scan_iter(match=f"{namespace}:__acks__.*.{queue}", count=100):
        ids += client.smembers(key)
    return ids


def backlog(app: Any, queue: str) -> int:
    """Messages of ``queue`` no worker has finished: waiting in the list, or taken by a worker
    (prefetched or running) and not acked yet."""
    runner = dramatiq_mode(app)
    client = redis.Redis.from_url(runner.settings.redis_url)
    try:
        return len(_unacked_ids(client, runner.broker_config.namespace, queue))
    finally:
        client.close()


def oldest_waiting_seconds(app: Any, queue: str) -> float:
    """Seconds since the oldest unfinished first attempt of ``queue`` was sent (0: none).

    Every unacked message counts, in the list or held by a worker, not just the
    list's head. A retry is left out: it keeps its first ``message_timestamp``
    (``Message.copy``), and the worker deletes its ``eta`` when it moves it back
    to this queue, so nothing records when it came back. A dead letter requeued by
    hand (lesson 06) loses its ``retries`` but keeps its first timestamp: it
    counts as old as its first send.
    """
    runner = dramatiq_mode(app)
    namespace = runner.broker_config.namespace
    client = redis.Redis.from_url(runner.settings.redis_url)
    try:
        ids = _unacked_ids(client, namespace, queue)
        bodies = client.hmget(f"{namespace}:{queue}.msgs", ids) if ids else []
    finally:
        client.close()
    messages = [Message.decode(body) for body in bodies if isinstance(body, bytes)]
    sent = [m.message_timestamp for m in messages if "retries" not in m.options]
    return max(0.0, time.time() - min(sent) / 1000) if sent else 0.0


def wait_taken(app: Any, queue: str, url: str, threads: int, timeout: float = 15.0) -> None:
    """Wait until the workers of ``queue`` fetched every message of its list and run ``threads``
    of them (``dramatiq_messages_inprogress`` on the page at ``url``)."""
    deadline = time.monotonic() + timeout
    while listed(app, queue) or scrape(url).get(IN_PROGRESS, 0.0) < threads:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers of {queue!r} did not take its messages "
                               f"within {timeout:g} s")
        time.sleep(0.01)


def freeze(process: psutil.Process, timeout: float = 5.0) -> None:
    """``SIGSTOP`` ``process``, and return once the kernel reports it stopped (the signal is
    delivered asynchronously: just after ``suspend()`` it may still be running)."""
    process.suspend()
    deadline = time.monotonic() + timeout
    while process.status() != psutil.STATUS_STOPPED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {process.pid} did not stop within {timeout:g} s")
        time.sleep(0.005)


def show_source(module: str, *names: str, docstrings: bool = True) -> None:
    """Print the lines of ``module`` that define ``names`` (``"HTTP_HOST"``,
    ``"Prometheus.after_enqueue"``), without importing it: importing Dramatiq's
    Prometheus module creates its metrics folder. ``docstrings=False`` leaves the
    definitions' docstrings out (the header says so)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    text = Path(spec.origin).read_text()
    lines = text.splitlines()
    short = module.replace(".", "/") + ".py"
    for name in names:
        node = _find(ast.parse(text).body, name.split("."))
        if node is None:
            raise LookupError(f"{name} is not defined in {short}")
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno or node.lineno
        shown = list(range(start, end + 1))
        doc = _docstring(node) if not docstrings else None
        if doc is not None:
            shown = [n for n in shown if not doc[0] <= n <= doc[1]]
        print(f"# {short}, line {start}" + (f"-{end}" if end > start else "")
              + (" (docstring left out)" if doc is not None else ""))
        print(textwrap.dedent("\n".join(lines[n - 1] for n in shown)))


def _docstring(node: ast.stmt) -> tuple[int, int] | None:
    """The first and last line of ``node``'s docstring, if it has one."""
    body = getattr(node, "body", [])
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return body[0].lineno, body[0].end_lineno or body[0].lineno
    return None


def _find(body: list[ast.stmt], path: list[str]) -> ast.stmt | None:
    head, rest = path[0], path[1:]
    for node in body:
        named = getattr(node, "name", None) == head or (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == head for t in node.targets)) or (
            isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and node.target.id == head)
        if named:
            return _find(getattr(node, "body", []), rest) if rest else node
    return None


def file_kinds(files: Iterable[Path], pid: int) -> list[str]:
    """The kinds of metric file (``counter``, ``gauge_livesum``, ...) process ``pid`` wrote."""
    suffix = f"_{pid}.db"
    return sorted(path.name[:-len(suffix)] for path in files if path.name.endswith(suffix))


def keys_left(url: str, namespace: str) -> int:
    """How many Redis keys still start with ``namespace``."""
    client = redis.Redis.from_url(url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{namespace}*", count=1000))
    finally:
        client.close()
