"""Lesson 07's outbox exercise: the answer passes; plausible wrong answers fail with the reason."""

from __future__ import annotations

import re
from functools import partial

import pytest

from shared.grading import course_cells
from shared.grading.cells import strip_solutions

NOTEBOOK = "07_production.ipynb"

grade = course_cells.grade
answer_with = partial(course_cells.answer_with, NOTEBOOK)

SEND_THEN_MARK = """                try:
                    broker.enqueue(Message(queue_name="default", actor_name="welcome",
                                           args=(email,), kwargs={}, options={},
                                           message_id=job_id))  # the job id: a copy is known
                except Exception:  # Redis is down: keep this row and the rest
                    break  # end the pass, not the relay; try again after the pause
                db.execute("UPDATE outbox SET sent_at = ? WHERE job_id = ?",
                           (time.time(), job_id))  # after the send: never marks a lost job
"""
MARK_THEN_SEND = """                db.execute("UPDATE outbox SET sent_at = ? WHERE job_id = ?", (time.time(), job_id))
                try:
                    broker.enqueue(Message(queue_name="default", actor_name="welcome",
                                           args=(email,), kwargs={}, options={},
                                           message_id=job_id))
                except Exception:
                    break
"""
CLAIM = """            db.execute("UPDATE outbox SET claimed_by = ?, claimed_until = ? "
                       "WHERE sent_at IS NULL AND (claimed_by = ? OR claimed_until IS NULL "
                       "OR claimed_until < ?)", (relay_id, now + LEASE_SECONDS, relay_id, now))
"""
ROWS_OF_RELAY = "WHERE outbox.claimed_by = ? AND outbox.sent_at IS NULL "

WRONG_ANSWERS = [
    # Mark first: a send that fails leaves the row marked, and the job is lost.
    ("mark-before-send", SEND_THEN_MARK, MARK_THEN_SEND,
     r"^while Redis was down, your relay marked \d+ of 4 rows sent .* that Redis never took"),
    # The first error ends the relay: raised, or returned.
    ("raises-on-first-error", "                    break  # end the pass, not the relay",
     "                    raise  # end the pass, not the relay",
     r"^while Redis was down, your relay raised ConnectionError.* and stopped: an error must end "
     r"the pass, not the relay"),
    ("returns-on-first-error", "                    break  # end the pass, not the relay",
     "                    return  # end the pass, not the relay",
     r"^while Redis was down, your relay returned while stop was not set"),
    # A fresh message id: the copy after a lost reply cannot be recognised.
    ("fresh-message-id", "options={},\n                                           message_id=job_id))",
     "options={}))",
     r"^the message of job '\w+' had message id '[\w-]+': send it with message_id=job_id"),
    # Send-then-mark with no claim: two relays at once both send every row.
    ("no-claim", CLAIM + "            rows = db.execute(\"SELECT outbox.job_id, jobs.email FROM outbox \"\n"
     "                              \"JOIN jobs ON jobs.id = outbox.job_id \"\n"
     "                              \"" + ROWS_OF_RELAY + "\"\n"
     "                              \"ORDER BY outbox.seq\", (relay_id,)).fetchall()\n",
     "            rows = db.execute(\"SELECT outbox.job_id, jobs.email FROM outbox \"\n"
     "                              \"JOIN jobs ON jobs.id = outbox.job_id \"\n"
     "                              \"WHERE outbox.sent_at IS NULL \"\n"
     "                              \"ORDER BY outbox.seq\").fetchall()\n",
     r"^two relays running at once sent \d+ of 20 jobs twice .*claim rows in one UPDATE"),
    # Claims that never run out: a dead relay's rows wait forever.
    ("claims-never-expire", " OR claimed_until IS NULL \"\n                       \"OR claimed_until < ?)\", "
     "(relay_id, now + LEASE_SECONDS, relay_id, now))",
     " OR claimed_by IS NULL)\", (relay_id, now + LEASE_SECONDS, relay_id))",
     r"^3 of 3 rows claimed by a relay that died .* were never sent: let a claim run out"),
    # Ignores stop: never returns.
    ("ignores-stop", "        while not stop.is_set():", "        while True:",
     r"^your relay did not return within 2 s after stop was set"),
]


def test_the_answer_passes():
    result = grade("outbox_relay", course_cells.answers(NOTEBOOK)["outbox_relay"])
    assert result.passed, result.reason


def test_the_stub_is_not_implemented():
    result = grade("outbox_relay", strip_solutions(course_cells.answers(NOTEBOOK)["outbox_relay"]))
    assert not result.passed and "not implemented" in result.reason.lower(), result.reason


@pytest.mark.parametrize("case, old, new, reason", WRONG_ANSWERS,
                         ids=[case[0] for case in WRONG_ANSWERS])
def test_wrong_answers_fail_with_the_reason(case, old, new, reason):
    result = grade("outbox_relay", answer_with("outbox_relay", old, new))
    assert not result.passed, f"{case}: a wrong answer passed"
    assert re.search(reason, result.reason), result.reason
