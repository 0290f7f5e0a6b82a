"""Which lesson module grades which notebook.

A lesson module defines ``NOTEBOOK_PREFIX`` and ``EXERCISES``. To grade a new
lesson, write its module and add one line to ``LESSONS``. Modules are named,
not imported, so the child process can import the one it needs by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from shared.grading.exercise import Exercise

LESSONS: dict[str, str] = {
    "01_": "shared.grading.lesson01",
    "02_": "shared.grading.lesson02",
    "03_": "shared.grading.lesson03",
    "04_": "shared.grading.lesson04",
    "05_": "shared.grading.lesson05",
    "06_": "shared.grading.lesson06",
    "07_": "shared.grading.lesson07",
}


def lesson_for(notebook_name: str) -> str | None:
    """The module name grading the notebook file ``notebook_name``, or None."""
    for prefix, module_name in LESSONS.items():
        if notebook_name.startswith(prefix):
            return module_name
    return None


def exercises_of(module_name: str) -> list[Exercise]:
    """The exercises a lesson module defines, in notebook order."""
    return list(_load(module_name).EXERCISES)


def exercise_in(module_name: str, name: str) -> Exercise:
    """Exercise ``name`` of one lesson module; KeyError if it has none."""
    for exercise in exercises_of(module_name):
        if exercise.name == name:
            return exercise
    raise KeyError(f"{module_name} has no exercise named {name!r}")


def find_exercise(name: str) -> tuple[str, Exercise]:
    """The lesson module and exercise called ``name``, searching every lesson.

    Exercise names are unique across the course, so ``check("percentile")``
    needs no lesson number.
    """
    for module_name in LESSONS.values():
        for exercise in exercises_of(module_name):
            if exercise.name == name:
                return module_name, exercise
    known = ", ".join(e.name for m in LESSONS.values() for e in exercises_of(m))
    raise ValueError(f"no exercise named {name!r}; the course has: {known}")


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)
