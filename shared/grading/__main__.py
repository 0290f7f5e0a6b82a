"""Grade every exercise notebook of a folder from a terminal.

Usage: ``python -m shared.grading [DIR] [--timeout SECONDS] [--solutions DIR]``
(DIR: ``exercises``)

The notebooks graded are named by ``solutions/``: for each solution
notebook of a graded lesson, the file of the same name in DIR. A missing
or renamed one scores 0 with "not found"; other files (a Jupyter
``-Copy1`` copy) are named in a note and never graded.

Prints one aligned line per exercise, then ``Score: earned/total`` and what
to do next. Exits 0 when every exercise passes, 1 otherwise, 2 when there
is nothing to grade.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from shared.grading import registry
from shared.grading.exercise import Result
from shared.grading.notebooks import grade_notebook
from shared.processes import become_subreaper, kill_descendants

COURSE_SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"
CHECKPOINT_SLACK_SECONDS = 1.0
_COPY = re.compile(r"-Copy\d+$")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder: Path = args.folder
    if not folder.is_dir():
        print(f"error: {folder}/ does not exist: expected a folder of lesson notebooks "
              "such as exercises/", file=sys.stderr)
        return 2
    names = expected_names(args.solutions, folder)
    if not names:
        prefixes = ", ".join(f"{prefix}*.ipynb" for prefix in registry.LESSONS)
        print(f"error: no gradable notebooks in {folder}/: expected files named {prefixes}",
              file=sys.stderr)
        return 2
    lessons = [(folder / name, module) for name, module in names.items()]
    become_subreaper()  # orphans of the graders come to us, not to init
    for line in notes(folder, names) + checkpoint_warnings(lessons):
        print(line)
    table = _Table(lessons)
    count = f"{len(lessons)} notebook{'' if len(lessons) == 1 else 's'}"
    print(f"Grading {count} in {folder}/, {_timeout_text(lessons, args.timeout)}", flush=True)
    earned = total = 0
    for path, module in lessons:
        for result in _grade(path, module, args.timeout):
            kill_descendants()  # a grader killed at its margin may have left some
            print(table.row(path.stem, result), flush=True)
            earned, total = earned + result.earned, total + result.points
    print(f"Score: {earned}/{total}")
    if earned < total:
        print(f"Next: fix the FAIL lines in {folder}/, save the notebook (Ctrl-S), "
              "then run `make grade` again.")
    return 0 if earned == total else 1


def expected_names(solutions: Path, folder: Path) -> dict[str, str]:
    """Notebook name -> lesson module, for every notebook that should be graded.

    The solution notebooks of registered lessons name them. Without a
    ``solutions/`` folder (an installed course), every ``NN_*.ipynb`` of
    ``folder`` that is not a Jupyter copy counts.
    """
    sources = sorted(solutions.glob("[0-9][0-9]_*.ipynb")) if solutions.is_dir() else []
    if not sources:
        sources = [p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")) if not _COPY.search(p.stem)]
    return {p.name: module for p in sources if (module := registry.lesson_for(p.name))}


def notes(folder: Path, names: dict[str, str]) -> list[str]:
    """One note per notebook in ``folder`` that looks like a lesson but is not graded."""
    lines = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        if path.name in names:
            continue
        original = _COPY.sub("", path.stem) + ".ipynb"
        if original in names:
            lines.append(f"note: {path.name} is a Jupyter copy: not graded, only {original} counts")
        else:
            lines.append(f"note: {path.name} is not graded: the course grades "
                         f"{', '.join(sorted(names))}")
    return lines


def checkpoint_warnings(lessons: list[tuple[Path, str]]) -> list[str]:
    """Warn where JupyterLab's checkpoint is newer than the saved notebook."""
    lines = []
    for path, _ in lessons:
        checkpoint = path.parent / ".ipynb_checkpoints" / f"{path.stem}-checkpoint.ipynb"
        try:
            newer = checkpoint.stat().st_mtime > path.stat().st_mtime + CHECKPOINT_SLACK_SECONDS
        except OSError:
            continue
        if newer:
            lines.append(f"warning: {checkpoint} is newer than {path.name}; this grades the saved "
                         f"file, so save it in JupyterLab (Ctrl-S) if your latest work is not in it")
    return lines


def _grade(path: Path, module: str, timeout: float | None) -> Iterable[Result]:
    if not path.exists():
        return [Result(e.name, e.points, False, f"{path} not found{_renamed_hint(path)}")
                for e in registry.exercises_of(module)]
    return grade_notebook(path, module, timeout)


def _renamed_hint(path: Path) -> str:
    prefix = path.name[:3]
    others = sorted(p.name for p in path.parent.glob(f"{prefix}*.ipynb"))
    if not others:
        return ""
    return f" (found {', '.join(others)}: rename your work to {path.name})"


class _Table:
    """Column widths known before grading, so rows print as they come."""

    def __init__(self, lessons: list[tuple[Path, str]]) -> None:
        exercises = [e for _, module in lessons for e in registry.exercises_of(module)]
        self.notebook = max(len(path.stem) for path, _ in lessons)
        self.name = max(len(e.name) for e in exercises)
        self.score = max(len(f"{e.points}/{e.points}") for e in exercises)

    def row(self, notebook: str, result: Result) -> str:
        score = f"{result.earned}/{result.points}"
        line = (f"{notebook:<{self.notebook}}  {result.exercise:<{self.name}}  "
                f"{score:>{self.score}}  {'PASS' if result.passed else 'FAIL'}")
        return f"{line}  {result.reason}" if result.reason else line


def _timeout_text(lessons: list[tuple[Path, str]], override: float | None) -> str:
    if override is not None:
        return f"timeout {override:g} s per exercise"
    timeouts = sorted({e.timeout for _, m in lessons for e in registry.exercises_of(m)})
    if len(timeouts) == 1:
        return f"timeout {timeouts[0]:g} s per exercise"
    return f"timeout {timeouts[0]:g}-{timeouts[-1]:g} s per exercise (set by each exercise)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.grading",
                                     description="Grade the exercise notebooks of a folder.")
    parser.add_argument("folder", nargs="?", type=Path, default=Path("exercises"), metavar="DIR",
                        help="folder of NN_*.ipynb notebooks (default: exercises)")
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="seconds allowed per exercise (default: each exercise's own, 10)")
    parser.add_argument("--solutions", type=Path, default=COURSE_SOLUTIONS, metavar="DIR",
                        help="the solution notebooks, whose names say which files to grade "
                             "(default: the course's solutions/)")
    return parser


def seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
