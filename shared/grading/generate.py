"""Write the learner's copy of every solution notebook.

Usage: ``python -m shared.grading.generate [--check] [--force] [--solutions DIR] [--exercises DIR]``

``solutions/NN_slug.ipynb`` is the only source. Its copy in ``exercises/``
has every solution block replaced by a stub line and every output cleared.

An exercise notebook is the learner's to fill in. Writing refuses to
replace an exercise cell that is no longer its stub, unless ``--force``,
which first keeps a copy in ``exercises/.backup/``. ``--check`` writes
nothing: the exit status says whether ``exercises/`` matches its sources
(1 when stale, missing or extra files). A file holding a learner's work is
judged by its committed version (git HEAD), or else cell by cell with
answered exercise cells and outputs left out, and a note says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from shared.grading.cells import (UnbalancedMarkers, exercise_name, has_solution, strip_solutions,
                                  stub)

FIX = "run `make exercises`"
BACKUP_FOLDER = ".backup"
GIT_SECONDS = 10


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
    learner_copy.metadata.pop("widgets", None)  # the solution run's progress bars
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


def problems(current: Plan, notes: list[str] | None = None) -> list[str]:
    """One line per exercise notebook that is stale, missing or extra.

    A file that differs from its generated text may hold the learner's
    answers: it is then judged by its committed version, or else with its
    exercise cells and outputs left out; ``notes`` gets one line saying so.
    """
    lines = []
    for path, text in current.expected.items():
        if not path.exists():
            lines.append(f"{path} is missing: {FIX}")
            continue
        found = path.read_text(encoding="utf-8")
        if found == text:
            continue
        at_head = committed(path)
        if at_head is not None and at_head != found:
            if at_head == text:
                _note(notes, f"{path} holds changes (your answers?): checked its committed "
                             "version (git HEAD) instead, which is up to date")
                continue
        if _same_but_answers(found, text):
            _note(notes, f"{path} holds changes (your answers?): checked it cell by cell, "
                         "leaving out answered exercise cells and outputs, and it is up to date")
            continue
        lines.append(f"{path} is stale: {FIX}")
    for path in current.extra:
        lines.append(f"{path} has no source in solutions/: delete it, or add its solution notebook")
    return lines


def changed_exercises(path: Path, text: str) -> tuple[list[str], list[str]]:
    """Exercises whose cell in the file at ``path`` differs from the one in ``text``.

    Returns (answered, touched): answered cells no longer hold their stub
    line (the learner's work); touched ones still do (an older stub, or an
    answer begun), so they are overwritten, but after a backup (none when
    the file is exactly as committed in git: nothing of the learner's is lost).
    """
    if not path.exists():
        return [], []
    try:
        found = _exercise_cells(path.read_text(encoding="utf-8"))
    except ValueError:
        return [], ["(unreadable notebook)"]
    fresh = _exercise_cells(text)
    changed = [name for name, source in found.items() if fresh.get(name) != source]
    answered = [name for name in changed if stub(name) not in found[name]]
    return answered, [name for name in changed if name not in answered]


def write(current: Plan, *, force: bool = False) -> tuple[list[Path], list[str]]:
    """Write every exercise notebook whose text changed.

    Returns the paths written, and one line per file left alone because it
    holds the learner's answers (``force`` overwrites them), or backed up
    before it was overwritten.
    """
    written, said = [], []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path, text in current.expected.items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        answered, touched = changed_exercises(path, text)
        if answered and not force:
            said.append(f"{path}: not overwritten, your work is in {', '.join(answered)}. "
                        f"Keep it, or run `make exercises FORCE=1` to start over from fresh "
                        f"stubs (your file is first copied to {path.parent / BACKUP_FOLDER}/)")
            continue
        if (answered or touched) and committed(path) != path.read_text(encoding="utf-8"):
            backup = path.parent / BACKUP_FOLDER / f"{path.stem}.{stamp}{path.suffix}"
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, backup)
            said.append(f"{path}: your previous file was copied to {backup}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written, said


def _note(notes: list[str] | None, line: str) -> None:
    if notes is not None:
        notes.append(line)


def committed(path: Path) -> str | None:
    """The file's text at git HEAD, or None (no git, not a checkout, not committed)."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
                              capture_output=True, timeout=GIT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", errors="replace") if done.returncode == 0 else None


def _cells(text: str) -> list[dict]:
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError("no list of cells")
    return [cell for cell in cells if isinstance(cell, dict)]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _exercise_cells(text: str) -> dict[str, str]:
    """Exercise name -> cell source, for the exercise cells of a notebook text."""
    named = ((exercise_name(_source(c)), _source(c)) for c in _cells(text) if c.get("cell_type") == "code")
    return {name: source for name, source in named if name is not None}


def _same_but_answers(found: str, fresh: str) -> bool:
    """Whether two notebook texts have the same cells, answered exercise cells aside.

    Outputs and metadata do not count. An exercise cell counts as answered
    once its stub line is gone; until then it must match the fresh stub.
    """
    try:
        pairs = list(zip(_cells(found), _cells(fresh), strict=True))
    except ValueError:  # unreadable, or not as many cells
        return False
    for mine, theirs in pairs:
        if mine.get("cell_type") != theirs.get("cell_type"):
            return False
        source, expected = _source(mine), _source(theirs)
        name = exercise_name(expected)
        answered = name is not None and exercise_name(source) == name and stub(name) not in source
        if source != expected and not answered:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.grading.generate",
        description="Write exercises/ from solutions/: answers become stubs, outputs are cleared.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if exercises/ is out of date")
    parser.add_argument("--force", action="store_true",
                        help="overwrite exercise cells that hold a learner's work (after a backup)")
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
        notes: list[str] = []
        found = problems(current, notes)
        for line in notes + found:
            print(line)
        if not found:
            count = len(current.expected)
            print(f"{args.exercises}/ is up to date ({count} notebook{'' if count == 1 else 's'})")
        return 1 if found else 0
    written, said = write(current, force=args.force)
    for path in written:
        print(f"wrote {path}")
    for line in said:
        print(line)
    for path in current.extra:
        print(f"{path} has no source in solutions/: delete it, or add its solution notebook")
    kept = any("not overwritten" in line for line in said)
    return 1 if current.extra or kept else 0


if __name__ == "__main__":
    sys.exit(main())
