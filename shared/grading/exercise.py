"""What an exercise is, and what grading one gives back."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

Test = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Exercise:
    """One graded task of a lesson.

    ``test`` receives the namespace left by running the learner's cell and
    raises ``AssertionError("one-line reason")`` when the answer is wrong.
    ``timeout`` (seconds) bounds running the cell and the test together,
    counted from the moment the cell starts (not Python's startup).
    ``waits_for`` says what the test waits for, if it waits (e.g. "the
    worker to send 3 emails"): a time-out message then names it.
    """

    name: str
    points: int
    test: Test
    timeout: float = 10.0
    waits_for: str = ""


@dataclass(frozen=True)
class Result:
    """The verdict on one exercise; ``reason`` says why it failed."""

    exercise: str
    points: int
    passed: bool
    reason: str = ""

    @property
    def earned(self) -> int:
        return self.points if self.passed else 0

    def line(self) -> str:
        """The one line a learner sees under the check cell."""
        score = f"({self.earned}/{self.points} points)"
        if self.passed:
            return f"✅ {self.exercise}: pass {score}"
        return f"❌ {self.exercise}: fail {score}: {self.reason}"

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """Show nothing: ``check()`` has already printed the verdict."""
