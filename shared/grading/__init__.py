"""Autograding for the course's exercise notebooks.

In a notebook: ``from shared.grading import check`` then ``check("percentile")``
under the exercise cell. From a terminal: ``python -m shared.grading [DIR]``.
Each exercise runs in child processes of its own (see ``runner``), so a
learner's loop, ``sys.exit`` or ``os._exit`` fails that exercise only, and
nothing the learner's code started outlives the grading.
"""

from shared.grading.exercise import Exercise, Result
from shared.grading.in_notebook import check

__all__ = ["Exercise", "Result", "check"]
