import pytest

from shared.breakdown import OTHER, breakdown, format_breakdown


def test_what_the_server_did_not_time_is_other():
    steps = breakdown(1.0, {"email": 0.5, "avatar": 0.3})
    assert steps == pytest.approx({"email": 0.5, "avatar": 0.3, OTHER: 0.2})


def test_other_is_never_negative_when_clocks_disagree():
    assert breakdown(0.5, {"email": 0.6})[OTHER] == 0.0


def test_the_table_has_a_line_per_step_and_a_total():
    table = format_breakdown(0.8, {"email": 0.5, "avatar": 0.2})
    lines = table.splitlines()
    assert [line.split()[0] for line in lines] == ["step", "email", "avatar", OTHER, "total"]
    assert lines[1].split()[1:] == ["500", "ms", "62%"]
    assert lines[-1].endswith("100%")


def test_a_zero_total_is_refused():
    with pytest.raises(ValueError, match="positive"):
        breakdown(0, {})
