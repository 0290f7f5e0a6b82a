"""Lesson 05's exercises: solutions score full, stubs and wrong answers score 0 with a reason."""

from __future__ import annotations

import pytest

from shared.grading import course_cells, registry, runner

MODULE = "shared.grading.lesson05"
NOTEBOOK = "05_priorities.ipynb"
NAMES = ["predict_first_batch", "reset_design"]


def grade(name: str, source: str):
    return runner.grade(source, MODULE, registry.exercise_in(MODULE, name), name)


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


def test_one_queue_with_priorities_misses_the_target():
    source = """# Exercise: reset_design
from shared.priorities import ActorPlan, Design, WorkerGroup
def reset_design():
    return Design("one queue", reset=ActorPlan("emails", 0), newsletter=ActorPlan("emails", 10),
                  workers=(WorkerGroup(("emails",), threads=2),))
"""
    result = grade("reset_design", source)
    assert not result.passed and "the target is 0.5 s" in result.reason


@pytest.mark.parametrize("body, words", [
    ("workers=(WorkerGroup(('urgent',), 1), WorkerGroup(('bulk',), 2))", "exactly 2"),
    ("workers=(WorkerGroup(('urgent',), 1), WorkerGroup(('bulk',), 1, prefetch=500))",
     "prefetch=None"),
])
def test_rules_are_checked_before_running(body, words):
    source = f"""# Exercise: reset_design
from shared.priorities import ActorPlan, Design, WorkerGroup
def reset_design():
    return Design("x", reset=ActorPlan("urgent", 0), newsletter=ActorPlan("bulk", 10), {body})
"""
    result = grade("reset_design", source)
    assert not result.passed and words in result.reason
