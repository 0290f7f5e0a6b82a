"""The marker text that makes a notebook cell an exercise.

An exercise cell's first line is ``# Exercise: <name>``. Its answer sits
between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines. Exercises are
found by this text, never by cell metadata, which learners lose when they
edit cells. Cells and lines are counted from 1 in every message, as a reader
counts them.
"""

from __future__ import annotations

import re

MARKER_PREFIX = "# Exercise: "
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"

_MARKER = re.compile(r"# Exercise: ([A-Za-z_][A-Za-z0-9_]*)")


class UnbalancedMarkers(ValueError):
    """A BEGIN SOLUTION without its END, or the reverse; ``line`` counts from 1."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def marker(name: str) -> str:
    """The first line of the cell that holds exercise ``name``."""
    return f"{MARKER_PREFIX}{name}"


def exercise_name(source: str) -> str | None:
    """The exercise a cell holds, read from its first line, or None."""
    first_line = source.split("\n", 1)[0].rstrip()
    match = _MARKER.fullmatch(first_line)
    return match.group(1) if match else None


def stub(name: str | None) -> str:
    """The statement that stands in for an answer in the learner's copy."""
    if name is None:
        return 'raise NotImplementedError("write your answer here")'
    return f'raise NotImplementedError("Exercise {name}: write your answer here")'


def has_solution(source: str) -> bool:
    """Whether the source holds at least one solution block."""
    return any(line.strip() == BEGIN_SOLUTION for line in source.split("\n"))


def strip_solutions(source: str) -> str:
    """Replace every solution block, marker lines included, with one stub line.

    The stub is indented like the block's BEGIN line, so it stays valid
    Python wherever the block was. Raises UnbalancedMarkers when a BEGIN has
    no END, an END has no BEGIN, or blocks nest.
    """
    name = exercise_name(source)
    kept: list[str] = []
    begin_line = 0
    for number, line in enumerate(source.split("\n"), start=1):
        text = line.strip()
        if text == BEGIN_SOLUTION:
            if begin_line:
                raise UnbalancedMarkers(
                    number, f"{BEGIN_SOLUTION} inside the block opened on line {begin_line}")
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            kept.append(indent + stub(name))
        elif text == END_SOLUTION:
            if not begin_line:
                raise UnbalancedMarkers(number, f"{END_SOLUTION} without a {BEGIN_SOLUTION} above it")
            begin_line = 0
        elif not begin_line:
            kept.append(line)
    if begin_line:
        raise UnbalancedMarkers(begin_line, f"{BEGIN_SOLUTION} without an {END_SOLUTION} below it")
    return "\n".join(kept)
