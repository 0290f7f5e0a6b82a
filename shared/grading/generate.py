"""Write the learner's copy of every solution notebook.

Usage: ``python -m shared.grading.generate [--check] [--solutions DIR] [--exercises DIR]``

``solutions/NN_slug.ipynb`` is the only source. Its copy in ``exercises/``
has every solution block replaced by a stub line and every output cleared.
With ``--check`` nothing is written: the exit status says whether
``exercises/`` matches its sources (1 when stale, missing or extra files).
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from shared.grading.cells import UnbalancedMarkers, exercise_name, has_solution, strip_solutions

FIX = "run `make exercises`"


class GenerationError(ValueError):
    """A solution notebook cannot be turned into an exercise notebook."""


@dataclass(frozen=True)
class Plan:
    """What ``exercises/`` should hold, and what it holds that has no source."""

    expected: dict[Path, str]  # exercise path -> notebook text
    extra: list[Path]


def exercise_text(solution: Path) -> str:
    """The exercise notebook for one solution notebook, as file text."""
    try:
        notebook = nbformat.read(solution, as_version=4)
    except Exception as exc:
        raise GenerationError(f"{solution}: not a readable notebook ({exc})") from None
    learner_copy = copy.deepcopy(notebook)
    for number, cell in enumerate(learner_copy.cells, start=1):
        if cell.cell_type != "code":
            continue
        cell.source = _stubbed(solution, number, cell.source)
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)  # timings of the solution run
    text = nbformat.writes(learner_copy)
    return text if text.endswith("\n") else text + "\n"


def _stubbed(solution: Path, number: int, source: str) -> str:
    try:
        stubbed = strip_solutions(source)
    except UnbalancedMarkers as exc:
        raise GenerationError(f"{solution}: cell {number}, line {exc.line}: {exc}") from None
    name = exercise_name(source)
    if name is not None and not has_solution(source):
        raise GenerationError(f"{solution}: cell {number} starts with `# Exercise: {name}` but has "
                              "no ### BEGIN SOLUTION block: its answer would reach learners")
    return stubbed


def plan(solutions: Path, exercises: Path) -> Plan:
    """Render every solution notebook; list exercise notebooks with no source."""
    sources = sorted(solutions.glob("*.ipynb"))
    expected = {exercises / path.name: exercise_text(path) for path in sources}
    names = {path.name for path in sources}
    extra = sorted(p for p in exercises.glob("*.ipynb") if p.name not in names)
    return Plan(expected, extra)


def problems(current: Plan) -> list[str]:
    """One line per exercise notebook that is stale, missing or extra."""
    lines = []
    for path, text in current.expected.items():
        if not path.exists():
            lines.append(f"{path} is missing: {FIX}")
        elif path.read_text(encoding="utf-8") != text:
            lines.append(f"{path} is stale: {FIX}")
    for path in current.extra:
        lines.append(f"{path} has no source in solutions/: delete it, or add its solution notebook")
    return lines


def write(current: Plan) -> list[Path]:
    """Write every exercise notebook whose text changed; return those written."""
    written = []
    for path, text in current.expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.grading.generate",
        description="Write exercises/ from solutions/: answers become stubs, outputs are cleared.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if exercises/ is out of date")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"), metavar="DIR")
    parser.add_argument("--exercises", type=Path, default=Path("exercises"), metavar="DIR")
    args = parser.parse_args(argv)
    if not args.solutions.is_dir():
        print(f"error: {args.solutions}/ does not exist: expected the solution notebooks there",
              file=sys.stderr)
        return 2
    try:
        current = plan(args.solutions, args.exercises)
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        found = problems(current)
        for line in found:
            print(line)
        if not found:
            count = len(current.expected)
            print(f"{args.exercises}/ is up to date ({count} notebook{'' if count == 1 else 's'})")
        return 1 if found else 0
    for path in write(current):
        print(f"wrote {path}")
    for line in problems(current):  # only extra files can remain
        print(line)
    return 1 if current.extra else 0


if __name__ == "__main__":
    sys.exit(main())
