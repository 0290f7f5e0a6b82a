"""run_load against a real threaded WSGI server on 127.0.0.1 (shared.web)."""

from __future__ import annotations

import _thread
import random
import re
import threading

import pytest
from flask import Flask, jsonify, request

from shared.load import (
    LoadResult,
    Record,
    Summary,
    parse_server_timing,
    percentile,
    run_load,
)
from shared.web import BackgroundServer, free_port

SLEEP = 0.2
SERVER_TIMING = "validate;dur=0.3, email;dur=512.4"  # the shape shared.app sends
DEADLINE = 10  # seconds any server-side wait may last before it gives up


class Gate:
    """What the test app's waiting routes share with the tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = self.most_inside = self.arrived = 0
        self.together = threading.Barrier(1)
        self.release = threading.Event()
        self.interrupt_on = 0  # the arrival that presses Ctrl-C in the test's thread; 0: none

    def reset(self, together: int) -> None:
        with self.lock:
            self.inside = self.most_inside = self.arrived = self.interrupt_on = 0
        self.together = threading.Barrier(together)
        self.release.clear()

    def __enter__(self) -> Gate:
        with self.lock:
            self.arrived += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            press_ctrl_c = self.arrived == self.interrupt_on
        if press_ctrl_c:
            _thread.interrupt_main()  # the test's thread is inside run_load's loop by now
        return self

    def __exit__(self, *exc_info) -> None:
        with self.lock:
            self.inside -= 1


def make_app(gate: Gate) -> Flask:
    app = Flask(__name__)

    @app.route("/echo", methods=["GET", "POST"])
    def echo():
        response = jsonify(json=request.get_json(silent=True),
                           request_id=request.headers.get("X-Request-ID"),
                           method=request.method)
        response.headers["Server-Timing"] = SERVER_TIMING
        return response

    @app.route("/sleep", methods=["GET", "POST"])
    def sleep():
        with gate:
            gate.release.wait(SLEEP)  # sleeps SLEEP, unless a test lets it go early
        return jsonify(slept=SLEEP)

    @app.route("/together", methods=["POST"])
    def together():
        """Answers once gate.together's number of requests are inside at once."""
        with gate:
            try:
                gate.together.wait(timeout=DEADLINE)
            except threading.BrokenBarrierError:
                return jsonify(error="the others never came"), 504
        return jsonify(together=True)

    @app.route("/hang", methods=["POST"])
    def hang():
        """Answers only when the test sets gate.release (or after DEADLINE)."""
        gate.release.wait(DEADLINE)
        return jsonify(released=True)

    @app.route("/fail", methods=["GET", "POST"])
    def fail():
        return jsonify(error="it broke"), 500

    return app


@pytest.fixture(scope="module")
def gate():
    return Gate()


@pytest.fixture(scope="module")
def base_url(gate):
    with BackgroundServer(make_app(gate), threaded=True) as server:
        yield server.url
        gate.release.set()  # no request may still be hanging when the server stops


@pytest.fixture(autouse=True)
def fresh_gate(gate):
    gate.reset(together=1)
    yield
    gate.release.set()


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("run_load-worker")]


# --- run_load against a live server -----------------------------------------

@pytest.mark.timeout(30)
def test_every_request_is_recorded_once_in_issue_order(base_url):
    result = run_load(f"{base_url}/echo", n=20, concurrency=5, label="echo",
                      progress=False)

    assert isinstance(result, LoadResult)
    assert result.label == "echo"
    assert result.concurrency == 5
    assert [record.index for record in result.records] == list(range(20))
    assert len({record.request_id for record in result.records}) == 20
    for record in result.records:
        assert re.fullmatch(r"r\d{4}-\w+", record.request_id)
        assert record.status == 200 and record.ok
        assert record.error is None
        assert result.started <= record.start <= record.end
        assert record.latency == record.end - record.start
    assert result.latencies == [record.latency for record in result.records]
    last_end = max(record.end for record in result.records)
    assert last_end - result.started <= result.wall


@pytest.mark.timeout(30)
def test_each_answer_matches_what_was_sent(base_url):
    result = run_load(f"{base_url}/echo", n=12, concurrency=4, progress=False)

    emails = set()
    for record in result.records:
        assert record.body["method"] == "POST"
        assert record.body["request_id"] == record.request_id
        email = record.body["json"]["email"]
        assert re.fullmatch(rf"user{record.index}-\w+@example\.com", email)
        emails.add(email)
    assert len(emails) == 12


@pytest.mark.timeout(30)
def test_request_ids_and_addresses_differ_between_runs(base_url):
    first = run_load(f"{base_url}/echo", n=2, concurrency=1, progress=False)
    second = run_load(f"{base_url}/echo", n=2, concurrency=1, progress=False)

    assert not {r.request_id for r in first.records} & {r.request_id for r in second.records}
    assert first.records[0].body["json"] != second.records[0].body["json"]


@pytest.mark.timeout(30)
def test_custom_body_and_headers(base_url):
    result = run_load(f"{base_url}/echo", n=5, concurrency=2, progress=False,
                      json_body=lambda index: {"n": index * 10},
                      headers={"X-Request-ID": "overridden", "Accept": "application/json"})

    for record in result.records:
        assert record.body["json"] == {"n": record.index * 10}
        assert record.body["request_id"] == record.request_id  # ours always wins


@pytest.mark.timeout(30)
def test_get_sends_no_body(base_url):
    result = run_load(f"{base_url}/echo", n=3, concurrency=3, method="get",
                      progress=False)

    assert [record.body["method"] for record in result.records] == ["GET"] * 3
    assert all(record.body["json"] is None for record in result.records)


@pytest.mark.timeout(30)
def test_server_timing_is_parsed_into_seconds(base_url):
    result = run_load(f"{base_url}/echo", n=2, concurrency=1, progress=False)

    for record in result.records:
        assert record.server_timing == pytest.approx({"validate": 0.0003, "email": 0.5124})


@pytest.mark.timeout(30)
def test_error_answers_are_recorded_and_counted(base_url):
    result = run_load(f"{base_url}/fail", n=6, concurrency=3, label="broken",
                      progress=False)

    assert [record.status for record in result.records] == [500] * 6
    assert not any(record.ok for record in result.records)
    assert all(record.body == {"error": "it broke"} for record in result.records)
    summary = result.summary()
    assert (summary.count, summary.ok, summary.failed) == (6, 0, 6)
    assert str(summary).startswith("broken: 6 requests, 0 ok, 6 failed, p50 ")


@pytest.mark.timeout(30)
def test_transport_errors_are_recorded_not_raised(base_url, gate):
    # The server holds every answer until the test is over; the client gives up.
    result = run_load(f"{base_url}/hang", n=2, concurrency=2, timeout=0.05,
                      progress=False)

    for record in result.records:
        assert record.status is None and record.body is None
        assert record.error.startswith("ReadTimeout")
    assert result.summary().failed == 2
    assert not gate.release.is_set()  # they timed out; nobody answered them


@pytest.mark.timeout(30)
def test_summary_of_a_live_run(base_url):
    result = run_load(f"{base_url}/echo", n=10, concurrency=2, label="live",
                      progress=False)
    summary = result.summary()

    assert isinstance(summary, Summary)
    assert (summary.label, summary.count, summary.ok, summary.failed) == ("live", 10, 10, 0)
    assert summary.p50 <= summary.p95 <= summary.p99 <= summary.max == max(result.latencies)
    assert summary.p50 == percentile(result.latencies, 50)
    assert summary.throughput > 0
    assert re.fullmatch(
        r"live: 10 requests, 10 ok, p50 [\d.]+ m?s, p95 [\d.]+ m?s, "
        r"p99 [\d.]+ m?s, max [\d.]+ m?s, [\d.]+ req/s",
        str(summary),
    )


@pytest.mark.timeout(30)
def test_concurrency_many_requests_are_in_flight_at_once(base_url, gate):
    # Each answer waits until 4 requests are inside the server at the same time:
    # only 4 clients working at once get any answer at all.
    gate.reset(together=4)
    result = run_load(f"{base_url}/together", n=8, concurrency=4, progress=False)

    assert [record.status for record in result.records] == [200] * 8
    assert gate.arrived == 8
    assert gate.most_inside == 4  # and never more than the 4 clients


@pytest.mark.timeout(30)
def test_one_worker_sends_one_request_at_a_time(base_url, gate):
    result = run_load(f"{base_url}/sleep", n=6, concurrency=1, progress=False)

    assert gate.most_inside == 1
    assert result.wall >= 6 * SLEEP  # each request sleeps SLEEP; none overlapped
    for earlier, later in zip(result.records, result.records[1:]):
        assert earlier.end <= later.start


@pytest.mark.timeout(30)
def test_concurrency_is_clamped_to_n(base_url):
    result = run_load(f"{base_url}/echo", n=3, concurrency=50, progress=False)

    assert result.concurrency == 3
    assert len(result.records) == 3


@pytest.mark.timeout(30)
def test_no_worker_threads_are_left_behind(base_url):
    run_load(f"{base_url}/echo", n=30, concurrency=6, progress=False)

    assert worker_threads() == []


@pytest.mark.timeout(30)
def test_a_bug_in_json_body_reaches_the_caller_and_stops_the_run(base_url):
    def json_body(index: int) -> dict:
        if index == 3:
            raise KeyError("no such signup")
        return {"n": index}

    with pytest.raises(KeyError, match="no such signup"):
        run_load(f"{base_url}/echo", n=500, concurrency=2, json_body=json_body,
                 progress=False)
    assert worker_threads() == []


# --- nothing listening ------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize(("n", "concurrency"), [(200, 4), (2, 2), (1, 1)])
def test_nothing_listening_raises_connection_error_naming_the_fix(n, concurrency):
    origin = f"http://127.0.0.1:{free_port()}"
    url = f"{origin}/signup"
    threads_before = set(threading.enumerate())

    with pytest.raises(ConnectionError) as caught:
        run_load(url, n=n, concurrency=concurrency, progress=False)

    message = str(caught.value)
    assert url in message
    assert f"nothing is listening on {origin}" in message
    assert "is the server started?" in message
    assert "ConnectError" in message
    # Server threads from earlier tests may end meanwhile; none may be added.
    assert set(threading.enumerate()) <= threads_before


# --- progress bar -----------------------------------------------------------

@pytest.mark.timeout(30)
def test_progress_bar_is_written_to_stderr_when_asked(base_url, capsys):
    run_load(f"{base_url}/echo", n=4, concurrency=2, label="with-bar", progress=True)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "with-bar" in captured.err and "4/4" in captured.err


@pytest.mark.timeout(30)
@pytest.mark.parametrize("progress", [None, False])
def test_short_or_silent_runs_print_nothing(base_url, capsys, progress):
    run_load(f"{base_url}/echo", n=4, concurrency=2, label="quiet", progress=progress)

    assert capsys.readouterr() == ("", "")


# --- Ctrl-C -----------------------------------------------------------------

@pytest.mark.timeout(30)
def test_ctrl_c_stops_sending_joins_workers_and_reraises(base_url, gate):
    # Ctrl-C when the 3rd request reaches the server: run_load has sent
    # requests, so it is waiting for answers, not still setting up.
    gate.interrupt_on = 3
    with pytest.raises(KeyboardInterrupt):
        # 40 requests of SLEEP each on 2 workers: 20 rounds unless stopped.
        run_load(f"{base_url}/sleep", n=40, concurrency=2, progress=False)

    assert worker_threads() == []  # the ones in flight finished first
    assert 3 <= gate.arrived < 20  # the server saw far fewer than the 40


# --- argument checks --------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"n": 0}, "n must be"),
        ({"n": -3}, "n must be"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"timeout": 0}, "timeout must be"),
        ({"method": "GET", "json_body": lambda index: {}}, "no body"),
        ({"url": "127.0.0.1:5000/signup"}, "full address"),
        ({"url": "localhost:5000/signup"}, "full address"),
    ],
)
def test_bad_arguments_are_refused(kwargs, complaint):
    arguments = {"url": "http://127.0.0.1:9/signup", "n": 5, "concurrency": 2,
                 "progress": False, **kwargs}
    with pytest.raises(ValueError, match=complaint):
        run_load(**arguments)


# --- percentile -------------------------------------------------------------

@pytest.mark.parametrize(("q", "expected"), [(5, 15), (30, 20), (40, 20), (50, 35),
                                             (95, 50), (100, 50)])
def test_nearest_rank_by_hand(q, expected):
    assert percentile([15, 20, 35, 40, 50], q) == expected


def test_percentile_does_not_need_sorted_input():
    assert percentile([50, 15, 40, 20, 35], 50) == 35


def nearest_rank_oracle(values: list[float], q: float) -> float:
    """The smallest value with at least q% of the values at or below it."""
    for candidate in sorted(values):
        if sum(value <= candidate for value in values) * 100 >= q * len(values):
            return candidate
    raise AssertionError("unreachable")


def test_percentile_matches_a_brute_force_oracle():
    rng = random.Random(20240607)
    for _ in range(300):
        values = [rng.choice([rng.random(), rng.randint(0, 5)])
                  for _ in range(rng.randint(1, 40))]
        q = rng.choice([rng.randint(1, 100), rng.randint(1, 400) / 4])
        assert percentile(values, q) == nearest_rank_oracle(values, q), (values, q)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], 0), ([1.0], -5),
                                           ([1.0], 100.5)])
def test_percentile_refuses_nonsense(values, q):
    with pytest.raises(ValueError):
        percentile(values, q)


# --- Summary of a hand-made result -----------------------------------------

def record(index: int, start: float, end: float, status: int | None = 200) -> Record:
    return Record(index=index, request_id=f"r{index:04d}-test", start=start, end=end,
                  status=status, error=None if status else "ConnectError: refused",
                  body=None)


def test_summary_by_hand():
    result = LoadResult(
        label="blocking",
        records=[
            record(0, 10.0, 10.5),
            record(1, 10.0, 11.0),
            record(2, 10.1, 10.2),
            record(3, 10.2, 12.0, status=500),
            record(4, 10.5, 10.504, status=None),
        ],
        started=9.99, wall=2.01, concurrency=3,
    )
    summary = result.summary()

    assert (summary.count, summary.ok, summary.failed) == (5, 3, 2)
    # latencies sorted: 0.004, 0.1, 0.5, 1.0, 1.8
    assert summary.p50 == pytest.approx(0.5)
    assert summary.p95 == summary.p99 == summary.max == pytest.approx(1.8)
    assert summary.throughput == pytest.approx(4 / 2.0)  # answered / (last end - first start)
    assert str(summary) == ("blocking: 5 requests, 3 ok, 2 failed, p50 500 ms, "
                            "p95 1.80 s, p99 1.80 s, max 1.80 s, 2.0 req/s")


def test_summary_without_label_has_no_prefix():
    result = LoadResult(label="", records=[record(0, 1.0, 1.25)], started=1.0,
                        wall=0.25, concurrency=1)

    assert str(result.summary()) == ("1 request, 1 ok, p50 250 ms, p95 250 ms, "
                                     "p99 250 ms, max 250 ms, 4.0 req/s")


# --- Server-Timing ----------------------------------------------------------

@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("validate;dur=0.3, welcome_email;dur=512.4, avatar;dur=230",
         {"validate": 0.0003, "welcome_email": 0.5124, "avatar": 0.23}),
        ("email;desc=smtp;dur=5", {"email": 0.005}),
        (" validate ; dur = 0.3 ", {"validate": 0.0003}),
        ("db;dur=2, db;dur=3", {"db": 0.005}),
        ("cache;desc=hit, ;dur=4, bad;dur=abc, neg;dur=-1, ok;DUR=1", {"ok": 0.001}),
        ("", {}),
        (",,;;,", {}),
    ],
)
def test_parse_server_timing(header, expected):
    assert parse_server_timing(header) == pytest.approx(expected)
