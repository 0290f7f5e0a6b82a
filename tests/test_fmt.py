"""The printed formats are regular: notebooks' outputs are matched by regexes."""

import math
import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

from shared.fmt import fmt_duration, fmt_rate, fmt_ratio, fmt_share

SANITIZE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"

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


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [
        (0.0, 0.444, "0%"),
        (0.0002, 0.444, "under 0.1%"),   # 0.045%: never "0.0%"
        (0.000222, 0.444, "0.1%"),       # 0.05% rounds up to 0.1%
        (0.0018, 0.444, "0.4%"),
        (0.0422, 0.444, "9.5%"),
        (0.04438, 0.444, "10%"),         # 9.995% rounds into the next band, not "10.0%"
        (0.255, 0.444, "57%"),
        (0.4418, 0.444, "over 99%"),     # 99.5%: not all of it, so not "100%"
        (0.444, 0.444, "100%"),
        (0.5, 0.444, "113%"),
        (3, 4, "75%"),
    ],
)
def test_fmt_share(part, whole, expected):
    assert fmt_share(part, whole) == expected


def test_every_share_is_sanitized_to_one_placeholder():
    """A share can read "under 0.1%" in one run and "0.2%" in the next: both sanitize alike."""
    patterns = get_sanitize_patterns(SANITIZE.read_text())
    for part in (0, 0.0001, 0.003, 0.04, 0.5, 0.999, 1):
        text = f"went to checking: {fmt_share(part, 1)} of it"
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        assert text == "went to checking: PERCENT of it", text


@pytest.mark.parametrize(("part", "whole"), [(-1, 2), (1, -2), (1, 0), (math.nan, 1),
                                             (1, math.inf)])
def test_fmt_share_refuses_nonsense(part, whole):
    with pytest.raises(ValueError):
        fmt_share(part, whole)
