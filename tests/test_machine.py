"""shared.machine: how busy the machine was while a cell measured, and the line it prints."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.machine import BUSY, QUIET, Reading, Snapshot, snapshot, watch_machine
from shared.scaling import count_primes

SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


def _snap(wall, busy, total, own, children=None, load=0.0):
    return Snapshot(wall, busy, total, own, children or {}, load)


def test_a_quiet_machine_is_one_where_others_took_little_cpu():
    # 2 cores for 1 s: 2 CPU seconds in all; this process 1.5, the machine 1.6 busy.
    reading = Reading.between(_snap(0, 10, 100, 5), _snap(1, 11.6, 102, 6.5, load=1.2), cores=2)
    assert reading.own_share == pytest.approx(0.75)
    assert reading.others_share == pytest.approx(0.05)
    assert reading.load_per_core == pytest.approx(0.6)
    assert not reading.busy and reading.verdict == QUIET
    assert str(reading).endswith(QUIET)


def test_a_busy_machine_is_one_where_others_took_much_cpu():
    reading = Reading.between(_snap(0, 10, 100, 5), _snap(1, 12, 102, 5.8, load=16), cores=2)
    assert reading.others_share == pytest.approx(0.6)
    assert reading.busy and reading.verdict == BUSY
    assert "load average 8.0 per core" in str(reading)


def test_child_processes_count_as_our_own_work():
    # A live child used 0.5 s; one alive at the start was reaped since (its 0.3 s at the
    # start is now inside ``own``, whole): only what ran during the block counts.
    start = _snap(0, 0, 0, 1.0, {11: 0.3, 12: 0.1})
    end = _snap(1, 1.8, 2, 1.0 + 0.3 + 0.2, {12: 0.6})
    reading = Reading.between(start, end, cores=2)
    assert reading.own_share == pytest.approx((0.2 + 0.5) / 2)
    assert reading.others_share == pytest.approx((1.8 - 0.7) / 2)


def test_a_block_too_short_for_the_counters_reads_as_quiet_not_as_a_crash():
    reading = Reading.between(_snap(0, 5, 10, 1), _snap(0.001, 5, 10, 1), cores=4)
    assert (reading.own_share, reading.others_share, reading.verdict) == (0.0, 0.0, QUIET)


def test_cores_must_be_at_least_one():
    with pytest.raises(ValueError, match="cores"):
        Reading.between(_snap(0, 0, 0, 0), _snap(1, 1, 1, 1), cores=0)


def _sanitize(text):
    rules = re.findall("^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.MULTILINE)
    for regex, replace in rules:
        text = re.sub(regex, replace, text)
    return text


def test_the_checker_sees_a_quiet_and_a_busy_line_as_the_same_line():
    quiet = Reading(2, 3.2, 0.85, 0.03, 0.4)
    busy = Reading(4, 0.072, 0.2, 0.75, 3.1)
    tiny = Reading(1, 12.5, 0.0004, 0.0, 0.0)
    lines = {_sanitize(str(reading)) for reading in (quiet, busy, tiny)}
    assert len(lines) == 1, lines
    [line] = lines
    assert "QUIET" not in line and QUIET not in line and BUSY not in line
    assert line.startswith("machine while measuring (N cores, DURATION)")


def test_watching_prints_one_line_after_the_block(capsys):
    with watch_machine() as watch:
        count_primes(20_000)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("machine while measuring (")
    assert printed[0] == str(watch.reading)
    assert watch.reading.seconds > 0 and watch.reading.own_share > 0


def test_watching_quietly_or_through_an_error_prints_nothing(capsys):
    with watch_machine(report=False) as watch:
        pass
    assert watch.reading is not None
    with pytest.raises(ZeroDivisionError):
        with watch_machine():
            raise ZeroDivisionError("inside the block")
    assert capsys.readouterr().out == ""


def test_a_snapshot_counts_the_cpu_of_a_child_that_ended():
    before = snapshot()
    spin = "import time\nwhile time.process_time() < 0.3: pass"
    subprocess.run([sys.executable, "-c", spin], check=True, timeout=60)
    after = snapshot()
    assert after.own - before.own >= 0.25  # its 0.3 s, give or take a clock tick
    assert after.machine_total >= after.machine_busy >= before.machine_busy


def test_the_checker_sees_every_measured_conclusion_word_as_the_same():
    from shared.scaling import GAIN_WORDS

    lines = {_sanitize(f"- avatars: 2 threads 1.9x, {words}") for words in GAIN_WORDS}
    assert lines == {"- avatars: 2 threads RATIO, GAIN"}
