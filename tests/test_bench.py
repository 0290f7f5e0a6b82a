"""`make bench` measures every mode; a tiny run proves it works end to end."""

import re

from shared.bench import main
from shared.modes import MODES


def test_a_small_benchmark_reports_each_mode_against_bare_and_blocking(capsys):
    assert main(["--trials", "1", "--clients", "3", "--email-delay", "0"]) == 0
    output = capsys.readouterr().out
    for mode in MODES:
        assert re.search(rf"  {mode} +median p50 +[\d.]+ m?s", output), output
    assert re.search(r"nowait +median p50 .* / bare: median [\d.]+x .*faster than blocking", output)
