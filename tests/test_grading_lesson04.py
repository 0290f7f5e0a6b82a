"""Lesson 04's exercises: solutions score full, stubs and wrong answers score 0 with a reason."""

from __future__ import annotations

import pytest

from shared.grading import course_cells, registry

MODULE = "shared.grading.lesson04"
NOTEBOOK = "04_dramatiq.ipynb"
NAMES = ["status_middleware", "stub_broker_test", "choose_settings"]


grade = course_cells.grade


def solution(name: str) -> str:
    return course_cells.answers(NOTEBOOK)[name]


def test_the_lesson_is_registered():
    assert registry.lesson_for(NOTEBOOK) == MODULE
    assert list(course_cells.answers(NOTEBOOK)) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_solutions_pass(name):
    result = grade(name, solution(name))
    assert result.passed, result.reason


@pytest.mark.parametrize("name", NAMES)
def test_stubs_fail(name):
    stub = grade(name, course_cells.stubs(NOTEBOOK)[name])
    assert (stub.passed, stub.reason) == (False, "not implemented yet")


@pytest.mark.parametrize("old, new, reason", [
    ('self.statuses[message.message_id] = "queued"', "pass",
     "statuses were {'ok': None"),
    ('self.statuses[message.message_id] = "running"', "pass",
     "the slow job's status to be 'running'"),
    ('f"failed: {type(exception).__name__}: {exception}"', '"failed"',
     "the 'boom' job ended as 'failed', expected 'failed: ValueError: no avatar today'"),
    ('self.statuses[message.message_id] = "skipped"', "pass",
     "the 'old' job ended as 'queued'"),
])
def test_a_middleware_missing_a_hook_fails_with_the_hook_named(old, new, reason):
    source = solution("status_middleware")
    assert old in source
    result = grade("status_middleware", source.replace(old, new))
    assert not result.passed
    assert reason in result.reason


@pytest.mark.parametrize("old, new, reason", [
    # a test that checks nothing passes every broken actor
    ('assert outbox == ["Welcome, ada@example.com!"], f"outbox was {outbox}"', "pass",
     "check_welcome passed an actor that"),
    # a test that does not check the failure lets a lenient actor through
    ('raise AssertionError("an address without @ did not fail")', "pass",
     "check_welcome passed an actor that accepts an address without @"),
    # a test that forgets to stop its worker leaves threads behind
    ("        worker.stop()\n", "        pass\n", "stop the Worker"),
])
def test_a_weak_unit_test_fails_with_the_reason(old, new, reason):
    source = solution("stub_broker_test")
    assert old in source
    result = grade("stub_broker_test", source.replace(old, new))
    assert not result.passed
    assert reason in result.reason


@pytest.mark.parametrize("old, new, reason", [
    # the lesson's old rule, whatever the learner measured
    ("math.floor(p50_goal_ms / pickup_share)", "math.floor(p50_goal_ms * 8 / 3)",
     "use the pickup_share you are given"),
    # the share turned upside down: a cap shorter than the goal
    ("math.floor(p50_goal_ms / pickup_share)", "math.floor(p50_goal_ms * pickup_share)",
     "pays idle Redis calls for nothing"),
    # the goal as the cap: meets it, but wastes idle calls
    ("math.floor(p50_goal_ms / pickup_share)", "int(p50_goal_ms)", "pays idle Redis calls for nothing"),
    # rounded up: the predicted median misses the goal
    ("math.floor(p50_goal_ms / pickup_share)", "math.floor(p50_goal_ms / pickup_share) + 2",
     "over the"),
    # Dramatiq's default cap, whatever the goal
    ("math.floor(p50_goal_ms / pickup_share)", "1000", "worker_timeout=1000 ms"),
    ("math.ceil(jobs_per_second * job_seconds / 0.8)", "math.ceil(jobs_per_second * job_seconds)",
     "at most 80% busy needs"),
])
def test_wrong_settings_fail_with_the_rule(old, new, reason):
    source = solution("choose_settings")
    assert old in source
    result = grade("choose_settings", source.replace(old, new))
    assert not result.passed
    assert reason in result.reason


def test_any_share_consistent_rounding_passes():
    # int() and round-down division are the same rule; a cap one ms short is still accepted
    source = solution("choose_settings").replace(
        "math.floor(p50_goal_ms / pickup_share)", "int(p50_goal_ms / pickup_share) - 1")
    result = grade("choose_settings", source)
    assert result.passed, result.reason


def test_the_largest_timeout_meets_the_goal_exactly():
    from shared.grading.lesson04 import largest_timeout
    assert largest_timeout(100, 0.4) == 250
    assert largest_timeout(30, 0.375) == 80
    assert all(0.3 * largest_timeout(g, 0.3) <= g < 0.3 * (largest_timeout(g, 0.3) + 1)
               for g in range(1, 400))
