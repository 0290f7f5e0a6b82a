"""shared.retries: the flaky mail servers, the retry policy, the backoff formula and the lab."""

from __future__ import annotations

import random
import smtplib
import socket
import threading
import time

import dramatiq
import pytest
from dramatiq.common import compute_backoff

from shared.processes import wait_until
from shared.redis_server import redis_url
from shared.retries.backoff import (DEFAULT_MAX_BACKOFF, DEFAULT_MAX_RETRIES, DEFAULT_MIN_BACKOFF,
                                    backoff_window, plot_delays, total_window)
from shared.retries.flaky_smtp import FlakySmtp, SilentSmtp
from shared.retries.lab import LabTimeout, RetryLab
from shared.retries.mail import send_welcome
from shared.retry_policy import EMAIL_MAX_RETRIES, is_transient, retry_email, retry_transient

DEADLINE = 20.0


# -- the flaky provider ---------------------------------------------------------

def _send(smtp, address, **kwargs):
    send_welcome(address, host=smtp.host, port=smtp.port, timeout=5, **kwargs)


def test_fail_first_refuses_each_address_k_times_with_a_transient_answer():
    with FlakySmtp(fail_first=2) as smtp:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                _send(smtp, "ada@example.com")
            assert refused.value.recipients["ada@example.com"][0] == 451
        _send(smtp, "ada@example.com")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            _send(smtp, "grace@example.com")  # counted per address
        assert smtp.answers_for("ada@example.com") == [451, 451, 250]
        assert smtp.received("ada@example.com") == 1
        assert smtp.received("grace@example.com") == 0


def test_bounced_addresses_get_a_permanent_answer_every_time():
    with FlakySmtp(bounce={"Nobody@Example.com"}) as smtp:
        for _ in range(3):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                _send(smtp, "nobody@example.com")
            assert refused.value.recipients["nobody@example.com"][0] == 550
        _send(smtp, "ada@example.com")
        assert [m.recipient for m in smtp.inbox] == ["ada@example.com"]


def test_a_lost_reply_delivers_the_message_yet_the_sender_sees_an_error():
    with FlakySmtp(lose_replies=1) as smtp:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            _send(smtp, "ada@example.com")
        assert smtp.received("ada@example.com") == 1
        _send(smtp, "ada@example.com")  # the retry
        assert smtp.received("ada@example.com") == 2
        assert smtp.answers_for("ada@example.com") == [0, 250]


def test_dedupe_drops_a_message_id_it_has_accepted_before():
    with FlakySmtp(lose_replies=1, dedupe=True) as smtp:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            _send(smtp, "ada@example.com", message_id="<job-1@defer.example>")
        _send(smtp, "ada@example.com", message_id="<job-1@defer.example>")
        _send(smtp, "ada@example.com", message_id="<job-2@defer.example>")
        assert [m.message_id for m in smtp.inbox] == ["<job-1@defer.example>",
                                                       "<job-2@defer.example>"]


def test_refuse_share_refuses_about_that_share_and_is_seeded():
    def codes(seed):
        with FlakySmtp(refuse_share=0.5, seed=seed) as smtp:
            for i in range(60):
                try:
                    _send(smtp, f"user{i}@example.com")
                except smtplib.SMTPRecipientsRefused:
                    pass
            return [a.code for a in smtp.answers]
    first, again = codes(1), codes(1)
    assert first == again
    assert 15 <= first.count(451) <= 45, first


@pytest.mark.parametrize("kwargs", [{"fail_first": -1}, {"refuse_share": 1.5}, {"delay": -1},
                                    {"lose_replies": -2}])
def test_bad_settings_are_refused_with_a_message(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FlakySmtp(**kwargs)


def test_a_silent_server_holds_a_client_until_its_timeout_or_its_stop():
    with SilentSmtp() as silent:
        start = time.monotonic()
        with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
            send_welcome("ada@example.com", host=silent.host, port=silent.port, timeout=0.3)
        assert time.monotonic() - start < DEADLINE
        errors = []

        def blocked():
            try:
                send_welcome("ada@example.com", host=silent.host, port=silent.port, timeout=None)
            except OSError as exc:
                errors.append(exc)

        thread = threading.Thread(target=blocked)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "a client with no timeout should still wait"
        silent.stop()
        thread.join(DEADLINE)
        assert not thread.is_alive(), f"the client was not freed within {DEADLINE} s of the stop"
        assert errors


# -- the policy -------------------------------------------------------------------

@pytest.mark.parametrize("exc, transient", [
    (smtplib.SMTPRecipientsRefused({"a@x.io": (451, b"later")}), True),
    (smtplib.SMTPRecipientsRefused({"a@x.io": (550, b"no")}), False),
    (smtplib.SMTPRecipientsRefused({"a@x.io": (451, b""), "b@x.io": (550, b"")}), False),
    (smtplib.SMTPDataError(421, b"busy"), True),
    (smtplib.SMTPDataError(554, b"spam"), False),
    (smtplib.SMTPServerDisconnected("closed"), True),
    (smtplib.SMTPNotSupportedError("no STARTTLS"), False),
    (ConnectionRefusedError(111, "refused"), True),
    (TimeoutError("timed out"), True),
    (OSError(113, "No route to host"), True),
    (socket.gaierror(-2, "Name or service not known"), True),
    (dramatiq.Retry("later", delay=100), True),
    (KeyError("email"), False),
])
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_retry_email_is_bounded():
    refused = ConnectionRefusedError(111, "refused")
    assert [retry_email(k, refused) for k in range(EMAIL_MAX_RETRIES + 2)] == \
        [True] * EMAIL_MAX_RETRIES + [False, False]


# -- the formula ------------------------------------------------------------------

@pytest.mark.parametrize("retries, window", [(0, (100, 200)), (2, (400, 800)), (3, (500, 1000)),
                                             (5, (500, 1000)), (40, (500, 1000))])
def test_backoff_window_by_hand(retries, window):
    assert backoff_window(retries, 100, 1000) == window


def test_dramatiq_draws_always_fall_inside_the_window():
    random.seed(6)
    for min_backoff, max_backoff in [(50, 800), (100, 1000), (15_000, DEFAULT_MAX_BACKOFF), (7, 7)]:
        for retries in range(25):
            low, high = backoff_window(retries, min_backoff, max_backoff)
            draws = [compute_backoff(retries, factor=min_backoff, max_backoff=max_backoff)[1]
                     for _ in range(200)]
            assert low - 1 <= min(draws) and max(draws) <= high, (retries, min_backoff, max_backoff)


def test_the_defaults_take_weeks_to_give_up():
    assert (DEFAULT_MAX_RETRIES, DEFAULT_MIN_BACKOFF) == (20, 15_000)
    low, high = total_window()
    assert 20 * 86_400_000 < low < high == 2 * low


def test_backoff_window_refuses_negative_retries():
    with pytest.raises(ValueError, match="from 0"):
        backoff_window(-1, 100, 1000)


def test_plot_delays_draws_the_draw_and_the_lateness_apart():
    fig = plot_delays([(0, 0.06, 0.09), (1, 0.15, 0.16), (2, 0.5, 0.55)], min_backoff=50,
                      max_backoff=400, poll_ms=50)
    assert len(fig.axes) == 2 and all(ax.collections for ax in fig.axes)
    assert [round(y, 3) for y in fig.axes[1].collections[0].get_offsets()[:, 1]] == [30, 10, 50]
    assert fig.dpi == 90


def test_the_timelines_draw_small_figures():
    from shared.retries.lab import Attempt
    from shared.retries.timelines import plot_poison, plot_time_limits

    poison = [Attempt("m", "welcome", (None,), n, start, start + 0.002, "AttributeError",
                      "retry" if n < 3 else "dead") for n, start in ((1, 0.0), (2, 0.4), (3, 1.2))]
    fig = plot_poison(poison, [0.05, 0.1, 0.15])
    assert fig.dpi == 90 and len(fig.axes[0].collections) == 2
    fig = plot_time_limits([("loop", 2.0, "TimeLimitExceeded"), ("read", 3.0, "TimeLimitExceeded"),
                            ("timeout", 0.5, "SMTPServerDisconnected")], limit=1.0)
    assert fig.dpi == 90 and len(fig.axes[0].patches) == 3


# -- the lab ------------------------------------------------------------------------

def test_the_lab_retries_gives_up_and_requeues_a_dead_letter():
    threads_before = set(threading.enumerate())
    with FlakySmtp(fail_first=2, bounce={"nobody@example.com"}) as smtp:
        lab = RetryLab()
        try:
            @lab.actor(max_retries=2, min_backoff=20, max_backoff=100)
            def welcome(address):
                send_welcome(address, host=smtp.host, port=smtp.port)

            lab.start()
            welcome.send("ada@example.com")
            dead = welcome.send("nobody@example.com")
            lab.wait(timeout=DEADLINE)
            assert [a.outcome for a in lab.attempts(args=("ada@example.com",))] == \
                ["retry", "retry", "done"]
            assert [a.number for a in lab.attempts(args=("nobody@example.com",))] == [1, 2, 3]
            assert all(a.delay is not None for a in lab.attempts() if a.outcome == "retry")
            [letter] = lab.dead_letters()
            assert (letter.actor, letter.args) == ("welcome", ("nobody@example.com",))
            assert lab.status(dead.message_id)["status"] == "failed"
            assert "550" in lab.status(dead.message_id)["error"]
            assert all(level != "ERROR" or "welcome" in text for level, text in lab.log)

            smtp.bounce.clear()
            lab.requeue(letter)
            with pytest.raises(ValueError, match="requeued already"):
                lab.requeue(letter)
            lab.wait(timeout=DEADLINE)
            assert lab.status(dead.message_id) == {"status": "done", "attempts": 4, "error": None}
            assert lab.dead_letters() == []
            client, namespace = lab.broker.client, lab.namespace
            assert list(client.scan_iter(match=f"{namespace}:*"))
        finally:
            lab.close()
        assert not list(client.scan_iter(match=f"{namespace}:*")), "close() left keys in Redis"
    wait_until(lambda: not {t for t in threading.enumerate() if t.is_alive()} - threads_before,
               DEADLINE, "the lab's worker threads to end after close()", interval=0.05)


def test_waiting_on_default_backoff_fails_with_a_deadline_that_explains():
    with FlakySmtp(fail_first=1) as smtp, RetryLab() as lab:
        @lab.actor
        def welcome(address):
            send_welcome(address, host=smtp.host, port=smtp.port)

        lab.start()
        welcome.send("ada@example.com")
        with pytest.raises(LabTimeout, match="min_backoff"):
            lab.wait(timeout=1.0)
        [attempt] = lab.attempts()
        assert attempt.outcome == "retry" and attempt.delay >= DEFAULT_MIN_BACKOFF / 1000


def test_two_labs_at_once_never_share_messages():
    with FlakySmtp() as smtp, RetryLab() as one, RetryLab() as two:
        for lab in (one, two):
            @lab.actor(max_retries=0)
            def welcome(address):
                send_welcome(address, host=smtp.host, port=smtp.port)
            lab.start()
        one.broker.get_actor("welcome").send("one@example.com")
        two.broker.get_actor("welcome").send("two@example.com")
        one.wait(timeout=DEADLINE)
        two.wait(timeout=DEADLINE)
        assert [a.args for a in one.attempts()] == [("one@example.com",)]
        assert [a.args for a in two.attempts()] == [("two@example.com",)]
        assert one.namespace != two.namespace


def test_a_lab_refuses_zero_worker_threads():
    with pytest.raises(ValueError, match="worker_threads"):
        RetryLab(worker_threads=0)


def test_a_refused_connection_is_retried_then_dead(closed_port):
    port = closed_port
    with RetryLab() as lab:
        @lab.actor(retry_when=retry_email, min_backoff=10, max_backoff=40)
        def welcome(address):
            send_welcome(address, host="127.0.0.1", port=port, timeout=2)

        lab.start()
        welcome.send("ada@example.com")
        lab.wait(timeout=DEADLINE)
        outcomes = [a.outcome for a in lab.attempts()]
        assert outcomes == ["retry"] * EMAIL_MAX_RETRIES + ["dead"]
        assert "Connection refused" in lab.attempts()[-1].error


def test_silent_server_is_reachable_but_mute():
    with SilentSmtp() as silent:
        with socket.create_connection((silent.host, silent.port), timeout=2) as conn:
            conn.settimeout(0.2)
            with pytest.raises(TimeoutError):
                conn.recv(1)


# -- the dramatiq mode: retries, dead letters, requeue, through the app --------------

def _signed_up(server, address):
    import httpx

    answer = httpx.post(f"{server.url}/signup", json={"email": address}, timeout=DEADLINE)
    assert answer.status_code == 202, answer.text
    return answer.json()["jobs"]["welcome_email"]


def _job(server, job_id):
    import httpx

    return httpx.get(f"{server.url}/jobs/{job_id}", timeout=DEADLINE).json()


def test_a_retried_email_shows_queued_with_its_attempts_and_error_then_done():
    from shared.app import create_app, state
    from shared.processes import wait_until
    from shared.web import BackgroundServer

    with FlakySmtp(fail_first=2) as smtp:
        # backoff 300-600 ms: long enough to watch the job wait for its retry
        app = create_app("dramatiq", redis_url=redis_url(), smtp_host=smtp.host, smtp_port=smtp.port,
                         min_backoff=300, max_backoff=600, workers=1, threads=1)
        try:
            with BackgroundServer(app) as server:
                job_id = _signed_up(server, "ada@example.com")
                seen = []

                def done():
                    job = _job(server, job_id)
                    seen.append((job["status"], job["attempts"], job["error"]))
                    return job["status"] in ("done", "failed")

                wait_until(done, DEADLINE, "the welcome email to finish", interval=0.02)
        finally:
            closed = state(app).close(timeout=DEADLINE)
    waiting = [(attempts, error) for status, attempts, error in seen if status == "queued" and attempts]
    assert sorted({attempts for attempts, _ in waiting}) == [1, 2], seen
    assert all(error.startswith("SMTPRecipientsRefused") and "451" in error for _, error in waiting)
    assert seen[-1] == ("done", 3, None)
    assert smtp.received("ada@example.com") == 1
    assert closed.unfinished == 0


def test_a_permanent_failure_is_failed_with_the_reason_and_a_requeued_letter_runs_once():
    from shared.app import create_app, state
    from shared.modes.dramatiq.dead_letters import NotADeadLetter
    from shared.web import BackgroundServer

    with FlakySmtp(fail_first=2, bounce={"nobody@example.com"}) as smtp:
        app = create_app("dramatiq", redis_url=redis_url(), smtp_host=smtp.host, smtp_port=smtp.port,
                         min_backoff=20, max_backoff=100, workers=1, threads=2)
        runner = state(app).runner
        try:
            with BackgroundServer(app) as server:
                ids = {address: _signed_up(server, address)
                       for address in ("ada@example.com", "nobody@example.com")}
                assert runner.wait(timeout=DEADLINE), "jobs still unfinished at the deadline"
                ada, dead = _job(server, ids["ada@example.com"]), _job(server, ids["nobody@example.com"])
                assert (ada["status"], ada["attempts"]) == ("done", 3)
                assert (dead["status"], dead["attempts"]) == ("failed", 1)  # 5xx: never retried
                assert dead["error"].startswith("SMTPRecipientsRefused") and "550" in dead["error"]
                [letter] = runner.dead_letters()
                assert (letter.message_id, letter.queue) == (ids["nobody@example.com"], "email")
                smtp.bounce.clear()  # fix the cause, then requeue
                assert runner.requeue(letter) == ids["nobody@example.com"]
                assert runner.wait(timeout=DEADLINE), "the requeued job did not finish"
                again = _job(server, ids["nobody@example.com"])
                # fail_first counts the bounced attempt too: one more 451, then 250
                assert (again["status"], again["attempts"], again["error"]) == ("done", 3, None)
                assert runner.dead_letters() == []
                with pytest.raises(NotADeadLetter, match="requeued already"):
                    runner.requeue(letter)  # a second time: nothing is sent
                assert _job(server, ids["nobody@example.com"])["status"] == "done"  # left alone
        finally:
            closed = state(app).close(timeout=DEADLINE)
    assert sorted(m.recipient for m in smtp.inbox) == ["ada@example.com", "nobody@example.com"]
    assert smtp.received("nobody@example.com") == 1  # the requeued letter ran once
    assert closed.unfinished == 0


def test_retry_transient_bounds_retries_of_transient_errors_only():
    retry_twice = retry_transient(2)
    refused = ConnectionRefusedError(111, "Connection refused")
    assert [retry_twice(n, refused) for n in range(4)] == [True, True, False, False]
    assert not retry_twice(0, smtplib.SMTPResponseException(550, b"no such user"))
    with pytest.raises(ValueError, match="max_retries must be 0 or more"):
        retry_transient(-1)
