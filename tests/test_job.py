"""Jobs are plain JSON data; run_job runs any of them and records what happened."""

import json

import pytest

from shared.job import BadJob, Job, new_jobs, run_job
from shared.settings import Settings


def test_a_signup_makes_one_job_of_each_kind_with_fresh_ids():
    first, second = new_jobs("ada@example.com", "r1"), new_jobs("ada@example.com", "r1")
    assert [job.kind for job in first] == ["welcome_email", "avatar"]
    assert len({job.id for job in first + second}) == 4


def test_a_job_crosses_processes_as_json_and_comes_back_equal():
    job = new_jobs("ada@example.com", "r1")[0]
    assert json.loads(job.to_json())["kind"] == "welcome_email"
    assert Job.from_json(job.to_json()) == job


@pytest.mark.parametrize("text, words", [
    ("{not json", "not JSON"),
    ('["a list"]', "exactly the keys"),
    ('{"id": "1"}', "exactly the keys"),
    ('{"id": "1", "kind": "rm -rf", "email": "a@b.c", "request_id": "r", "enqueued_at": 1}',
     "unknown kind"),
    ('{"id": 1, "kind": "avatar", "email": "a@b.c", "request_id": "r", "enqueued_at": 1}',
     "must be strings"),
    ('{"id": "1", "kind": "avatar", "email": "a@b.c", "request_id": "r", "enqueued_at": "x"}',
     "must be a finite number"),
    ('{"id": "1", "kind": "avatar", "email": "a@b.c", "request_id": "r", "enqueued_at": true}',
     "must be a finite number"),  # JSON's true is a Python int
    ('{"id": "1", "kind": "avatar", "email": "a@b.c", "request_id": "r", "enqueued_at": NaN}',
     "must be a finite number"),
    ('{"id": "1", "kind": "avatar", "email": "a@b.c", "request_id": "r", "enqueued_at": -Infinity}',
     "must be a finite number"),
])
def test_a_message_that_is_not_a_job_is_refused_with_a_reason(text, words):
    with pytest.raises(BadJob, match=words):
        Job.from_json(text)


def test_run_job_records_success(store, fast_sink):
    email = "ada@example.com"
    jobs = new_jobs(email, "r1")
    store.create_account(email, jobs)
    settings = Settings(smtp_port=fast_sink.port, store_path=str(store.path))
    for job in jobs:
        run_job(job, store, settings)
    assert [store.job(job.id).status for job in jobs] == ["done", "done"]
    assert store.account(email).welcomed and store.avatar(email)
    assert [span.name for span in store.spans()] == ["welcome_email", "avatar"]


def test_run_job_records_a_failure_then_raises_it(store, closed_port):
    [job] = new_jobs("ada@example.com", "r1", ("welcome_email",))
    store.create_account("ada@example.com", [job])
    with pytest.raises(ConnectionRefusedError):
        run_job(job, store, Settings(smtp_port=closed_port, smtp_timeout=2))
    status = store.job(job.id)
    assert (status.status, status.attempts) == ("failed", 1)
    assert status.error.startswith("ConnectionRefusedError")
