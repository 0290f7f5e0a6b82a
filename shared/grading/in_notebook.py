"""``check(name)``: grade an exercise from inside the notebook that holds it."""

from __future__ import annotations

import sys
from typing import Any

from shared.grading import registry, runner
from shared.grading.cells import exercise_name
from shared.grading.exercise import Result


_RECORDED: list[tuple[int, str]] = []  # (execution count, source) of exercise cells run


def check(name: str) -> Result:
    """Grade the last run of the cell starting ``# Exercise: <name>`` and print the verdict.

    The source is what the kernel last ran for that cell, so the learner's
    latest run is graded, saved or not. Returns the Result, which displays nothing.
    """
    shell = _ipython()
    module_name, exercise = registry.find_exercise(name)
    found = _latest_recorded(name) or _latest_run(shell.user_ns.get("In", []), name)
    if found is None:
        print(f"❌ {name}: run the exercise cell above first")
        return Result(name, exercise.points, False, "run the exercise cell above first")
    number, source = found
    result = runner.grade(source, module_name, exercise, f"In [{number}]")
    print(result.line())
    return result


def record_exercise_runs(shell: Any) -> None:
    """Remember every exercise cell the kernel runs from now on.

    IPython's ``In`` list misses cells run without history (nbval, some
    front ends); a ``pre_run_cell`` hook sees them all.
    """
    if getattr(shell, "_course_records_exercises", False):
        return
    shell._course_records_exercises = True

    def remember(info) -> None:
        if exercise_name(info.raw_cell or "") is not None:
            _RECORDED.append((shell.execution_count, info.raw_cell))

    shell.events.register("pre_run_cell", remember)


def _latest_recorded(name: str) -> tuple[int, str] | None:
    for number, source in reversed(_RECORDED):
        if exercise_name(source) == name:
            return number, source
    return None


def _latest_run(history: list[str], name: str) -> tuple[int, str] | None:
    """The execution number and source of the latest input starting with the marker."""
    for number in range(len(history) - 1, 0, -1):
        if exercise_name(history[number]) == name:
            return number, history[number]
    return None


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        shell = None
    else:
        shell = get_ipython()
    if shell is None:
        raise RuntimeError(
            "check() grades an exercise from inside a Jupyter notebook; "
            "from a terminal, run `python -m shared.grading exercises` (or `make grade`)")
    return shell


def _install() -> None:
    ipython = sys.modules.get("IPython")  # only a kernel has it loaded already
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        record_exercise_runs(shell)


_install()
