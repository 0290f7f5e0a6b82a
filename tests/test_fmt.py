"""The printed formats are regular: notebooks' outputs are matched by regexes."""

import math
import re

import pytest

from shared.fmt import fmt_duration, fmt_rate, fmt_ratio

DURATION = re.compile(r"^\d+(\.\d+)? (ms|s)$")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "0.00 ms"),
        (0.0004, "0.40 ms"),
        (0.00042, "0.42 ms"),
        (0.000999, "1.0 ms"),  # rounds up into the next band, not "1.00 ms"
        (0.001, "1.0 ms"),
        (0.0067, "6.7 ms"),
        (0.00999, "10 ms"),
        (0.010, "10 ms"),
        (0.512, "512 ms"),
        (0.9994, "999 ms"),
        (0.9996, "1.00 s"),  # never "1000 ms"
        (1.0, "1.00 s"),
        (1.234, "1.23 s"),
        (75.0, "75.00 s"),
    ],
)
def test_fmt_duration(seconds, expected):
    assert fmt_duration(seconds) == expected
    assert DURATION.match(fmt_duration(seconds))


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.0, "1.0x"), (12.34, "12.3x"), (99.94, "99.9x"), (99.96, "100x"),
     (100.0, "100x"), (104.6, "105x"), (2500.2, "2500x")],
)
def test_fmt_ratio(ratio, expected):
    assert fmt_ratio(ratio) == expected


@pytest.mark.parametrize(
    ("rate", "unit", "expected"),
    [(15.2, "req", "15.2 req/s"), (15.26, "req", "15.3 req/s"), (0.0, "req", "0.0 req/s"),
     (1234.56, "req", "1234.6 req/s"), (3.0, "emails", "3.0 emails/s")],
)
def test_fmt_rate(rate, unit, expected):
    assert fmt_rate(rate, unit) == expected


def test_fmt_rate_default_unit_is_requests():
    assert fmt_rate(15.2) == "15.2 req/s"


@pytest.mark.parametrize("formatter", [fmt_duration, fmt_ratio, fmt_rate])
@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_negative_and_non_finite_numbers_are_refused(formatter, bad):
    with pytest.raises(ValueError):
        formatter(bad)
