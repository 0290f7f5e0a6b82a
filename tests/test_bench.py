"""`make bench` measures every mode; a tiny run proves it works end to end."""

import re

from shared.bench import main


def test_a_small_benchmark_reports_each_mode_and_the_ratios(capsys):
    assert main(["--trials", "1", "--clients", "3", "--email-delay", "0"]) == 0
    output = capsys.readouterr().out
    for mode in ("bare", "nowait", "blocking"):
        assert re.search(rf"{mode} +median p50 [\d.]+ m?s", output), output
    assert "nowait p50 / bare p50: median" in output
    assert "blocking median p50 / one signup's jobs alone" in output
