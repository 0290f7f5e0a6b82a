"""Grade the exercises of one notebook file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

from shared.grading import registry, runner
from shared.grading.cells import exercise_name, marker
from shared.grading.exercise import Exercise, Result


class UnreadableNotebook(ValueError):
    """The file is not a notebook we can read; the message says why."""


@dataclass(frozen=True)
class CodeCell:
    number: int  # counted from 1 over all cells, markdown included
    source: str


def grade_notebook(path: Path, module_name: str, timeout: float | None = None) -> Iterator[Result]:
    """Yield one Result per exercise of the lesson, in order, as each is graded.

    An unreadable notebook fails every exercise with the reason; it never raises.
    """
    exercises = registry.exercises_of(module_name)
    try:
        cells = read_code_cells(path)
    except UnreadableNotebook as exc:
        for exercise in exercises:
            yield Result(exercise.name, exercise.points, False, str(exc))
        return
    for exercise in exercises:
        yield _grade_exercise(path.name, cells, module_name, exercise, timeout)


def read_code_cells(path: Path) -> list[CodeCell]:
    """The code cells of a notebook file, numbered as a reader counts cells.

    Plain JSON is enough to find cells, and skips nbformat's slow import.
    """
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UnreadableNotebook(f"{path.name} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableNotebook(
            f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        raise UnreadableNotebook(f"{path.name} is not a Jupyter notebook (no list of cells)")
    return [CodeCell(number, _source(cell))
            for number, cell in enumerate(cells, start=1) if cell.get("cell_type") == "code"]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _grade_exercise(notebook_name: str, cells: list[CodeCell], module_name: str,
                    exercise: Exercise, timeout: float | None) -> Result:
    found = [cell for cell in cells if exercise_name(cell.source) == exercise.name]
    if not found:
        return _failed(exercise, f"no cell starting with `{marker(exercise.name)}` in {notebook_name}")
    if len(found) > 1:
        numbers = ", ".join(str(cell.number) for cell in found)
        return _failed(exercise, f"cells {numbers} of {notebook_name} all start with "
                                 f"`{marker(exercise.name)}`: keep one")
    cell = found[0]
    location = f"{notebook_name}, cell {cell.number}"
    return runner.grade(cell.source, module_name, exercise, location, timeout)


def _failed(exercise: Exercise, reason: str) -> Result:
    return Result(exercise.name, exercise.points, False, reason)
