"""A small concurrent HTTP load generator: how long did each client wait?

:func:`run_load` sends ``n`` requests from ``concurrency`` worker threads and
records, for every request, when it was sent and when its answer arrived.
Worker threads never print; only the calling thread touches the progress bar,
because output from background threads lands in the wrong notebook cell.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from fractions import Fraction

import httpx

from shared.errors import describe
from shared.fmt import fmt_duration, fmt_rate
from shared.progress import progress_bar

#: Methods that carry no request body.
BODYLESS_METHODS = frozenset({"GET", "HEAD"})

#: Failures that mean "nothing is listening there".
_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)

#: How often the calling thread wakes up while waiting for answers.
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Record:
    """One request, from the moment it was sent until its answer was read.

    ``start`` and ``end`` are ``time.perf_counter()`` readings.  ``status`` is
    ``None`` when the request failed before any answer came back; ``error``
    then says why.  ``server_timing`` holds the Server-Timing header in seconds.
    """

    index: int
    request_id: str
    start: float
    end: float
    status: int | None
    error: str | None
    body: dict | None
    server_timing: dict[str, float] = field(default_factory=dict)

    @property
    def latency(self) -> float:
        """Seconds the client waited for the answer."""
        return self.end - self.start

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Summary:
    """The numbers worth printing about one load run.

    Percentiles are taken over every request, failed ones included: the
    client waited that long either way.  ``throughput`` counts the requests
    that got an answer, per second of the run.
    """

    label: str
    count: int
    ok: int
    failed: int
    p50: float
    p95: float
    p99: float
    max: float
    throughput: float

    def __str__(self) -> str:
        prefix = f"{self.label}: " if self.label else ""
        failed = f", {self.failed} failed" if self.failed else ""
        requests = "request" if self.count == 1 else "requests"
        return (
            f"{prefix}{self.count} {requests}, {self.ok} ok{failed}, "
            f"p50 {fmt_duration(self.p50)}, p95 {fmt_duration(self.p95)}, "
            f"p99 {fmt_duration(self.p99)}, max {fmt_duration(self.max)}, "
            f"{fmt_rate(self.throughput)}"
        )


@dataclass(frozen=True)
class LoadResult:
    """Everything one call to :func:`run_load` measured.

    ``records`` are in the order the requests were issued; ``started`` is the
    ``perf_counter()`` reading at the start of the run, ``wall`` its length.
    """

    label: str
    records: list[Record]
    started: float
    wall: float
    concurrency: int

    @property
    def latencies(self) -> list[float]:
        """Seconds each client waited, in the order the requests were issued."""
        return [record.latency for record in self.records]

    def summary(self) -> Summary:
        """Counts, latency percentiles and throughput of this run."""
        latencies = self.latencies
        answered = sum(record.status is not None for record in self.records)
        ok = sum(record.ok for record in self.records)
        elapsed = (max(record.end for record in self.records)
                   - min(record.start for record in self.records))
        return Summary(
            label=self.label,
            count=len(self.records),
            ok=ok,
            failed=len(self.records) - ok,
            p50=percentile(latencies, 50),
            p95=percentile(latencies, 95),
            p99=percentile(latencies, 99),
            max=max(latencies),
            throughput=answered / elapsed if elapsed > 0 else 0.0,
        )


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile: sort, rank = ceil(q/100 * n), return sorted[rank-1].

    Always one of the measured values, never an interpolation.  Raises
    ``ValueError`` for no values or ``q`` outside (0, 100].
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q!r}")
    # Exact arithmetic, so that 40% of 5 values is rank 2, not 2.0000000001 -> 3.
    rank = math.ceil(Fraction(str(q)) * len(ordered) / 100)
    return float(ordered[rank - 1])


def parse_server_timing(header: str) -> dict[str, float]:
    """Durations from a Server-Timing header, in seconds.

    ``"validate;dur=0.3, email;dur=512.4"`` gives ``{"validate": 0.0003,
    "email": 0.5124}``.  Entries without a usable ``dur`` are skipped; a name
    that appears twice has its durations added.  Quoted values (``desc="a,
    b"``) are not understood: the course's app never sends them.
    """
    timings: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        duration = _duration_ms(params)
        if name and duration is not None:
            timings[name] = timings.get(name, 0.0) + duration / 1000
    return timings


def run_load(
    url: str,
    n: int,
    concurrency: int,
    *,
    json_body: Callable[[int], dict] | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    label: str = "",
    progress: bool | None = None,
) -> LoadResult:
    """Send ``n`` requests to ``url``, ``concurrency`` at a time, and time each.

    Each worker thread sends its next request as soon as its previous one is
    answered.  Every request carries a unique ``X-Request-ID``; its JSON body
    is ``json_body(index)``, by default a new e-mail address per request.
    Failed requests are recorded, not raised, but ``ConnectionError`` is
    raised when nothing is listening at ``url``.  ``progress=None`` shows a
    bar only for runs longer than two seconds; ``False`` never shows one.
    On Ctrl-C no new request is sent; those in flight finish first.
    """
    method = method.upper()
    _check_arguments(url, n, concurrency, timeout, method, json_body)
    concurrency = min(concurrency, n)
    run_tag = secrets.token_hex(3)
    if json_body is None and method not in BODYLESS_METHODS:
        json_body = _new_address_per_request(run_tag)
    width = max(4, len(str(n - 1)))
    request_ids = [f"r{index:0{width}d}-{run_tag}" for index in range(n)]
    limits = httpx.Limits(max_connections=concurrency,
                          max_keepalive_connections=concurrency)

    # trust_env=False: a proxy from the environment would distort the timings.
    with httpx.Client(limits=limits, timeout=timeout, trust_env=False) as client, \
            progress_bar(n, label, "req", progress) as bar:

        def send(index: int) -> tuple[Record, bool]:
            body = json_body(index) if json_body is not None else None
            return _send(client, method, url, index, request_ids[index], body, headers)

        records: list[Record] = []
        refused: list[Record] = []
        gave_up = False
        pool = ThreadPoolExecutor(concurrency, thread_name_prefix="run_load-worker")
        started = time.perf_counter()
        try:
            # The pool hands the requests out in order, to whichever worker is free.
            waiting = {pool.submit(send, index) for index in range(n)}
            while waiting:
                done, waiting = wait(waiting, _POLL_SECONDS, FIRST_COMPLETED)
                for future in done:
                    record, was_refused = future.result()  # a bug here re-raises
                    records.append(record)
                    if was_refused:
                        refused.append(record)
                bar.update(len(done))  # update(0) lets a delayed bar appear
                if len(refused) == len(records) >= concurrency:
                    gave_up = True  # the first wave all bounced: stop knocking
                    break
            wall = time.perf_counter() - started
        finally:
            # After a Ctrl-C or a refusal: drop the requests not sent yet,
            # let those in flight finish, and leave no worker thread behind.
            pool.shutdown(wait=True, cancel_futures=True)

    if gave_up:
        raise ConnectionError(
            f"nothing is listening on {_origin(url)} — is the server started? "
            f"(the first {len(refused)} requests to {url} all failed: "
            f"{refused[0].error})"
        )
    records.sort(key=lambda record: record.index)
    return LoadResult(label=label, records=records, started=started,
                      wall=wall, concurrency=concurrency)


def _send(client: httpx.Client, method: str, url: str, index: int,
          request_id: str, body: dict | None,
          headers: dict[str, str] | None) -> tuple[Record, bool]:
    """One timed request; returns its record and whether it was refused."""
    request_headers = httpx.Headers(headers)
    request_headers["X-Request-ID"] = request_id
    start = time.perf_counter()
    try:
        response = client.request(method, url, json=body, headers=request_headers)
    except httpx.HTTPError as exc:
        end = time.perf_counter()
        record = Record(index, request_id, start, end, status=None,
                        error=describe(exc), body=None)
        return record, isinstance(exc, _CONNECT_FAILURES)
    end = time.perf_counter()
    timing = parse_server_timing(", ".join(response.headers.get_list("server-timing")))
    record = Record(index, request_id, start, end, status=response.status_code,
                    error=None, body=_json_object(response), server_timing=timing)
    return record, False


def _json_object(response: httpx.Response) -> dict | None:
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _new_address_per_request(run_tag: str) -> Callable[[int], dict]:
    def json_body(index: int) -> dict:
        return {"email": f"user{index}-{run_tag}@example.com"}
    return json_body


def _check_arguments(url: str, n: int, concurrency: int, timeout: float,
                     method: str, json_body: Callable[[int], dict] | None) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if json_body is not None and method in BODYLESS_METHODS:
        raise ValueError(f"{method} requests carry no body, so json_body makes no sense")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(
            f"url must be a full address like http://127.0.0.1:5000/signup, got {url!r}")


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


def _duration_ms(params: list[str]) -> float | None:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() != "dur":
            continue
        try:
            duration = float(value)
        except ValueError:
            return None
        return duration if math.isfinite(duration) and duration >= 0 else None
    return None
