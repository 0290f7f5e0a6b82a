"""Exercises of lesson 01, blocking request handlers."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, call_text, describe, expect_raises, function

NOTEBOOK_PREFIX = "01_"

# -- percentile ---------------------------------------------------------------

FIVE = [15, 20, 35, 40, 50]
HAND_EXAMPLES = [(FIVE, 30, 20), (FIVE, 40, 20), (FIVE, 50, 35), (FIVE, 100, 50),
                 (FIVE, 5, 15), ([50, 15, 40, 20, 35], 40, 20), ([50, 15, 40, 20, 35], 90, 50)]
SINGLE = [([7], q, 7) for q in (0.5, 1, 50, 99.9, 100)]
# q / 100 * n rounds in floating point: 28 / 100 * 25 is 7.000000000000001, rank 8.
# The exact rank ceil(q x n / 100) is 7. Values n..1, so the answer is the rank.
FLOAT_TRAPS = [(list(range(n, 0, -1)), q, _rank)
               for q, n, _rank in [(28, 25, 7), (56, 25, 14), (14, 50, 7), (7, 100, 7), (55, 100, 55)]]


def test_percentile(ns: dict[str, Any]) -> None:
    percentile = function(ns, "percentile")
    for values, q, expected in HAND_EXAMPLES + SINGLE + FLOAT_TRAPS + _random_cases():
        got = call(percentile, list(values), q)
        if not _equal(got, expected):
            raise AssertionError(
                f"{call_text('percentile', values, q)} returned {got!r}, expected {expected!r} "
                f"(nearest rank: ceil({_fraction(q)} x {len(values)}) = "
                f"{_ordinal(_exact_rank(q, len(values)))} smallest){_float_hint(values, q, got)}")
    values, copy = [50, 15, 40, 20, 35], [50, 15, 40, 20, 35]
    call(percentile, values, 50)
    if values != copy:
        raise AssertionError(f"percentile({copy}, 50) changed its input into {values}: "
                             "sort a copy (sorted(values)), not the caller's list")
    for values, q, why in [([], 50, "empty input"), ([1, 2, 3], 0, "q must be in (0, 100]"),
                           ([1, 2, 3], -5, "q must be in (0, 100]"),
                           ([1, 2, 3], 100.5, "q must be in (0, 100]")]:
        expect_raises(ValueError, why, percentile, values, q)


def _random_cases() -> list[tuple[list[float], float, float]]:
    rng = random.Random(1)
    cases: list[tuple[list[float], float, float]] = []
    for _ in range(300):
        values: list[float] = [rng.randint(0, 60) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.3:
            values = [v / 4 for v in values]
        q = rng.randint(1, 100) if rng.random() < 0.7 else round(rng.uniform(0.1, 100), 1)
        cases.append((values, q, sorted(values)[_exact_rank(q, len(values)) - 1]))
    return cases


def _exact_rank(q: float, n: int) -> int:
    return math.ceil(Fraction(str(q)) * n / 100)


def _float_hint(values: Sequence[float], q: float, got: Any) -> str:
    """A hint when the answer sits at the rank float rounding of q / 100 * n gives."""
    n = len(values)
    rounded = math.ceil(q / 100 * n)
    if rounded == _exact_rank(q, n) or not 1 <= rounded <= n or not _equal(got, sorted(values)[rounded - 1]):
        return ""
    return (f"; q / 100 * n is {q / 100 * n!r} in floating point: "
            "multiply before you divide, q * n / 100")


def _equal(got: Any, expected: float) -> bool:
    try:
        return bool(got == expected)
    except Exception:  # e.g. an array, whose truth value is ambiguous
        return False


def _fraction(q: float) -> str:
    two_places = f"{q / 100:.2f}"
    return two_places if float(two_places) == q / 100 else f"{q / 100:g}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# -- predict_latency ----------------------------------------------------------

TOLERANCE = 1e-9


def test_predict_latency(ns: dict[str, Any]) -> None:
    predict_latency = function(ns, "predict_latency")
    got = call(predict_latency, 3, 0.5)
    if not _close(got, 1.5):
        raise AssertionError(f"predict_latency(3, 0.5) returned {got!r}, expected 1.5 "
                             "(threads defaults to 1, so request 3 waits for 3 rounds of 0.5 s)")
    for service_s in (0.5, 0.1, 0.25, 2.0):
        for threads in range(1, 6):
            for k in range(1, 13):
                rounds = math.ceil(k / threads)
                got = call(predict_latency, k, service_s, threads=threads)
                if not _close(got, rounds * service_s):
                    raise AssertionError(
                        f"{call_text('predict_latency', k, service_s, threads=threads)} returned "
                        f"{got!r}, expected {rounds * service_s:g} (request {k} waits for "
                        f"ceil({k} / {threads}) = {rounds} round{'' if rounds == 1 else 's'} "
                        f"of {service_s:g} s)")
    for k, threads, why in [(0, 1, "k counts from 1"), (-1, 1, "k counts from 1"),
                            (1, 0, "a server needs at least 1 thread"),
                            (1, -2, "a server needs at least 1 thread")]:
        expect_raises(ValueError, why, predict_latency, k, 0.5, threads=threads)


def _close(got: Any, expected: float) -> bool:
    is_number = isinstance(got, (int, float)) and not isinstance(got, bool)
    return is_number and abs(got - expected) <= TOLERANCE


# -- signup_validation --------------------------------------------------------

JSON = "application/json"
LIMIT = 1024


def test_signup_validation(ns: dict[str, Any]) -> None:
    create_signup_app = function(ns, "create_signup_app")
    app = call(create_signup_app)
    if not hasattr(app, "test_client"):
        raise AssertionError(f"create_signup_app() returned {app!r}, expected a Flask app")
    app.testing = True  # exceptions, NotImplementedError included, reach the test
    client = app.test_client()
    for email, content_type, extra in [
        ("ada@example.com", JSON, {}),
        ("grace.hopper+ci@mail.example.org", "application/json; charset=utf-8", {"name": "Grace"}),
    ]:
        _expect_created(client, json.dumps({"email": email, **extra}).encode(), content_type, email)
    _expect_created(client, _padded_body(LIMIT), JSON, "ada@example.com",
                    hint=f"{LIMIT} bytes is the limit, not over it")
    for body, bad_type, status, hint in _bad_requests():
        _expect_error(client, body, bad_type, status, hint)
    for method, url, status, hint in [("GET", "/signup", 405, "only POST is allowed on /signup"),
                                      ("PUT", "/signup", 405, "only POST is allowed on /signup"),
                                      ("GET", "/no-such-page", 404, "no route for this URL"),
                                      ("POST", "/signups", 404, "no route for this URL")]:
        request = f"{method} {url}"
        response = _send(client, request, lambda u=url, m=method: client.open(u, method=m))
        _check_error(response, request, status, hint)


def _bad_requests() -> list[tuple[bytes, str | None, int, str]]:
    good = b'{"email": "ada@example.com"}'
    cases: list[tuple[bytes, str | None, int, str]] = [
        (good, "text/plain", 415, ""),
        (good, "application/problem+json", 415, "only application/json itself is accepted, "
                                                "not another +json type (request.is_json lets it through)"),
        (good, None, 415, ""),
        (b"email=ada%40example.com", "application/x-www-form-urlencoded", 415, ""),
        (_padded_body(LIMIT + 1), JSON, 413, ""),
        (_padded_body(1_000_000), JSON, 413, ""),
        (b"[1, 2]", JSON, 400, ""),
        (b'"ada@example.com"', JSON, 400, ""),
        (b"null", JSON, 400, ""),
        (b'{"email": ', JSON, 400, ""),
        (b"", JSON, 400, ""),
        (b'{"email": "ada\xff@example.com"}', JSON, 400, ""),
        (b"{}", JSON, 400, ""),
        (b'{"name": "Ada"}', JSON, 400, ""),
    ]
    for email in [42, None, ["ada@example.com"], "", "ada", "ada@example", "ada @example.com",
                  "@example.com", "ada@", "ada@example.com\n"]:
        hint = "whitespace, even a trailing newline, is not allowed" if email == "ada@example.com\n" else ""
        cases.append((json.dumps({"email": email}).encode(), JSON, 400, hint))
    return cases


def _padded_body(size: int) -> bytes:
    """A JSON object with a valid email, exactly ``size`` bytes long."""
    head = b'{"email": "ada@example.com", "note": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def _post(client: Any, body: bytes, content_type: str | None) -> Any:
    return _send(client, _request_text(body, content_type),
                 lambda: client.post("/signup", data=body, content_type=content_type))


def _send(client: Any, request: str, send: Any) -> Any:
    try:
        return send()
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"{request} raised {describe(exc)} (a server would answer 500)") from None


def _expect_created(client: Any, body: bytes, content_type: str, email: str, hint: str = "") -> None:
    response = _post(client, body, content_type)
    request = _request_text(body, content_type)
    if response.status_code != 201:
        raise AssertionError(f"{request} answered {response.status_code}, expected 201{_paren(hint)}")
    answer = response.get_json(silent=True)
    if not isinstance(answer, dict) or answer.get("email") != email:
        raise AssertionError(f"{request} answered {_body_text(response)}, "
                             f"expected JSON {json.dumps({'email': email})}")


def _expect_error(client: Any, body: bytes, content_type: str | None, status: int, hint: str) -> None:
    _check_error(_post(client, body, content_type), _request_text(body, content_type), status, hint)


def _check_error(response: Any, request: str, status: int, hint: str) -> None:
    if response.status_code != status:
        raise AssertionError(f"{request} answered {response.status_code}, expected {status}{_paren(hint)}")
    answer = response.get_json(silent=True)
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str) or not answer["error"]:
        raise AssertionError(f'{request} answered {status} with {_body_text(response)}, expected JSON '
                             '{"error": "<message>"} (Flask\'s own error pages are HTML)')


def _request_text(body: bytes, content_type: str | None) -> str:
    if len(body) > 80:
        body_text = f"a {len(body):,}-byte JSON body"
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            body_text = f"body {body!r} (not UTF-8)"
        else:
            body_text = f"body '{text}'" if text.isprintable() else f"body {text!r}"
    if content_type == JSON:
        return f"POST /signup with {body_text}"
    header = "no Content-Type" if content_type is None else f"Content-Type {content_type}"
    return f"POST /signup with {header} and {body_text}"


def _body_text(response: Any) -> str:
    text = response.get_data(as_text=True)
    text = text if len(text) <= 80 else text[:79] + "…"
    return f"{response.mimetype or 'no content type'} {text!r}"


def _paren(hint: str) -> str:
    return f" ({hint})" if hint else ""


EXERCISES = [
    Exercise("percentile", 2, test_percentile),
    Exercise("predict_latency", 2, test_predict_latency),
    Exercise("signup_validation", 3, test_signup_validation),
]
