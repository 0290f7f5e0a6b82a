"""Lesson 01's exercises: plausible wrong answers fail with the reason."""

from __future__ import annotations

import re
from functools import partial

import pytest

from shared.grading import course_cells

NOTEBOOK = "01_blocking_handlers.ipynb"


grade = course_cells.grade
answer_with = partial(course_cells.answer_with, NOTEBOOK)


WRONG_ANSWERS = [
    # percentile: q / 100 rounds in floating point; sorting in place changes the caller's list.
    ("percentile", "math.ceil(q * len(ranked) / 100)", "math.ceil(q / 100 * len(ranked))",
     r"^percentile\(\[25, 24, .*\], 28\) returned 8, expected 7 .*multiply before you divide"),
    ("percentile", "    ranked = sorted(values)\n", "    values.sort()\n    ranked = values\n",
     r"^percentile\(\[50, 15, 40, 20, 35\], 50\) changed its input .*sort a copy"),
    # predict_latency: a request waits for whole rounds, not a share of one.
    ("predict_latency", "math.ceil(k / threads) * service_s", "k / threads * service_s",
     r"^predict_latency\(1, 0\.5, threads=2\) returned 0\.25, expected 0\.5 \(request 1 waits for "
     r"ceil\(1 / 2\) = 1 round of 0\.5 s\)"),
    # signup_validation: request.is_json, no size limit, Flask's HTML error pages.
    ("signup_validation", 'if request.mimetype != "application/json":', "if not request.is_json:",
     r"Content-Type application/problem\+json .* answered 201, expected 415 \(only "
     r"application/json itself is accepted"),
    ("signup_validation", '    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES\n', "",
     r"^POST /signup with a 1,025-byte JSON body answered 201, expected 413$"),
    ("signup_validation", "    @app.errorhandler(HTTPException)\n", "",
     r"answered 413 with text/html .*expected JSON \{\"error\": \"<message>\"\} \(Flask's own "
     r"error pages are HTML\)"),
]


@pytest.mark.parametrize("name, old, new, reason", WRONG_ANSWERS,
                         ids=["divide-first", "sorts-in-place", "no-whole-rounds", "is-json",
                              "no-size-limit", "html-errors"])
def test_wrong_answers_fail_with_the_reason(name, old, new, reason):
    result = grade(name, answer_with(name, old, new))
    assert not result.passed, f"{name} accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason
