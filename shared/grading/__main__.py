"""Grade every exercise notebook of a folder from a terminal.

Usage: ``python -m shared.grading [DIR] [--timeout SECONDS]`` (DIR: ``exercises``)

Prints one aligned line per exercise, then ``Score: earned/total``. Exits 0
when every exercise passes, 1 otherwise, 2 when there is nothing to grade.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.grading import registry, runner
from shared.grading.exercise import Result
from shared.grading.notebooks import grade_notebook


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder: Path = args.folder
    if not folder.is_dir():
        print(f"error: {folder}/ does not exist: expected a folder of lesson notebooks "
              "such as exercises/", file=sys.stderr)
        return 2
    lessons = [(path, module) for path in sorted(folder.glob("[0-9][0-9]_*.ipynb"))
               if (module := registry.lesson_for(path.name))]
    if not lessons:
        prefixes = ", ".join(f"{prefix}*.ipynb" for prefix in registry.LESSONS)
        print(f"error: no gradable notebooks in {folder}/: expected files named {prefixes}",
              file=sys.stderr)
        return 2
    runner.adopt_orphans()
    table = _Table(lessons)
    count = f"{len(lessons)} notebook{'' if len(lessons) == 1 else 's'}"
    print(f"Grading {count} in {folder}/, {_timeout_text(lessons, args.timeout)}", flush=True)
    earned = total = 0
    for path, module in lessons:
        for result in grade_notebook(path, module, args.timeout):
            print(table.row(path.stem, result), flush=True)
            earned, total = earned + result.earned, total + result.points
    print(f"Score: {earned}/{total}")
    return 0 if earned == total else 1


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
    return parser


def seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
