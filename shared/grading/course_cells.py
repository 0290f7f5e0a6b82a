"""The course's own exercise cells, for the tests that grade them.

Answers come from ``solutions/``. Stubs come from the COMMITTED copy of
``exercises/`` (git HEAD), never from the working tree: that folder is the
learner's, and once they have solved an exercise it holds their answer, not
a stub. Outside a git checkout, stubs come from a fresh generation of
``solutions/``, which is what ``exercises/`` is committed as (the test
``test_committed_exercises_are_up_to_date`` says so).
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.grading import registry, runner
from shared.grading.cells import exercise_name
from shared.grading.exercise import Result
from shared.grading.generate import committed, exercise_text

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"


def answers(notebook: str) -> dict[str, str]:
    """Exercise name -> the cell's source in ``solutions/<notebook>``, answer included."""
    return cells_of((SOLUTIONS / notebook).read_text(encoding="utf-8"))


def stubs(notebook: str) -> dict[str, str]:
    """Exercise name -> the cell's source in the learner's copy as the course ships it.

    That is ``exercises/<notebook>`` at git HEAD, or, outside git (or before
    the notebook is committed), the generated copy of ``solutions/<notebook>``.
    """
    text = committed(EXERCISES / notebook)
    if text is None:
        text = exercise_text(SOLUTIONS / notebook)
    return cells_of(text)


def answer_with(notebook: str, name: str, old: str, new: str) -> str:
    """The answer to exercise ``name`` with ``old`` replaced by ``new``: a plausible wrong answer."""
    source = answers(notebook)[name]
    assert old in source, f"the reference solution of {name} changed: update this case"
    return source.replace(old, new)


def grade(name: str, source: str) -> Result:
    """Grade ``source`` as the cell of exercise ``name`` (any lesson), in a child process."""
    module_name, exercise = registry.find_exercise(name)
    return runner.grade(source, module_name, exercise, name)


def cells_of(notebook_text: str) -> dict[str, str]:
    """Exercise name -> cell source, for every exercise cell of a notebook's text, in order."""
    cells = {}
    for cell in json.loads(notebook_text)["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        name = exercise_name(source) if cell["cell_type"] == "code" else None
        if name is not None:
            cells[name] = source
    return cells
