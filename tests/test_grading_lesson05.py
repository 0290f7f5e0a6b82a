"""Lesson 05's exercises: solutions score full, stubs and wrong answers score 0 with a reason."""

from __future__ import annotations

import pytest

from shared.grading import course_cells, registry

MODULE = "shared.grading.lesson05"
NOTEBOOK = "05_priorities.ipynb"
NAMES = ["predict_first_batch", "reset_design"]


grade = course_cells.grade


def test_the_lesson_is_registered():
    assert registry.lesson_for(NOTEBOOK) == MODULE
    assert list(course_cells.answers(NOTEBOOK)) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_solutions_pass(name):
    result = grade(name, course_cells.answers(NOTEBOOK)[name])
    assert result.passed, result.reason


@pytest.mark.parametrize("name", NAMES)
def test_stubs_fail(name):
    stub = grade(name, course_cells.stubs(NOTEBOOK)[name])
    assert (stub.passed, stub.reason) == (False, "not implemented yet")


def test_a_prediction_that_ignores_prefetch_fails():
    source = """# Exercise: predict_first_batch
def predict_first_batch(sent, prefetch):
    if prefetch < 1:
        raise ValueError("prefetch")
    order = sorted(enumerate(sent), key=lambda item: (item[1][1], item[0]))
    return [name for _, (name, _) in order]
"""
    result = grade("predict_first_batch", source)
    assert not result.passed and "only the first 2" in result.reason


def reset_design_source(body: str) -> str:
    return f"""# Exercise: reset_design
from shared.priorities import ActorPlan, Design, WorkerGroup
def reset_design():
    return {body}
"""


# Plausible designs the requirement profile really refuses, each with the words of its reason.
WRONG_DESIGNS = {
    "one shared queue, default prefetch": (
        "Design('one queue', reset=ActorPlan('emails', 0), newsletter=ActorPlan('emails', 0),"
        " workers=(WorkerGroup(('emails',), threads=3),))",
        "reset target: the reset email waited"),
    "priority alone": (
        "Design('priority', reset=ActorPlan('emails', 0), newsletter=ActorPlan('emails', 10),"
        " workers=(WorkerGroup(('emails',), threads=3),))",
        "the target is 500 ms"),
    "prefetch raised to hold the backlog": (
        "Design('big prefetch', reset=ActorPlan('emails', 0), newsletter=ActorPlan('emails', 10),"
        " workers=(WorkerGroup(('emails',), threads=3, prefetch=200),))",
        "hold budget: worker group 1"),
    "prefetch raised and a thread more than the budget": (
        "Design('big prefetch', reset=ActorPlan('emails', 0), newsletter=ActorPlan('emails', 10),"
        " workers=(WorkerGroup(('emails',), threads=4, prefetch=200),))",
        "thread budget: your design runs 4"),
    "a dedicated reset thread over the budget": (
        "Design('1 + 3', reset=ActorPlan('urgent', 0), newsletter=ActorPlan('bulk', 10),"
        " workers=(WorkerGroup(('urgent',), 1), WorkerGroup(('bulk',), 3)))",
        "the budget is 3"),
    "separate queues that leave the newsletter one thread": (
        "Design('1 + 1', reset=ActorPlan('urgent', 0), newsletter=ActorPlan('bulk', 10),"
        " workers=(WorkerGroup(('urgent',), 1), WorkerGroup(('bulk',), 1)))",
        "newsletter deadline: the 30 copies took"),
}


@pytest.mark.parametrize("case", list(WRONG_DESIGNS))
def test_the_profile_refuses_a_plausible_wrong_design(case):
    body, words = WRONG_DESIGNS[case]
    result = grade("reset_design", reset_design_source(body))
    assert not result.passed and words in result.reason, result.reason


def test_a_second_design_meets_the_profile_too():
    """The decision has more than one right answer: one group of 2 threads reading both queues."""
    body = ("Design('both', reset=ActorPlan('urgent', 0), newsletter=ActorPlan('bulk', 10),"
            " workers=(WorkerGroup(('urgent', 'bulk'), 2),))")
    result = grade("reset_design", reset_design_source(body))
    assert result.passed, result.reason
