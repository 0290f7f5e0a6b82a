"""The signup page at GET /, in a real headless browser (Chromium + selenium).

The browser tests skip, saying why and how to install one, when this
machine has no Chromium; CI installs it (see .ci/run).
"""

import httpx
import pytest

from shared.app import create_app, state
from shared.browser import (browser_problem, headless_chromium, recorded, sign_up_in_browser,
                            submit_signup, wait_for_row, wait_until_finished)
from shared.modes import MODES, redis_url_for
from shared.smtp_sink import SmtpSink, refuse_first
from shared.web import BackgroundServer

FOLLOWS_JOBS = [mode for mode, runner in MODES.items() if runner.kinds and runner.tells_job_ids]
needs_browser = pytest.mark.skipif(browser_problem() is not None,
                                   reason=f"no headless browser: {browser_problem()}")


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


def test_the_page_is_served_at_the_root(fast_sink):
    app = create_app("bare", smtp_host=fast_sink.host, smtp_port=fast_sink.port)
    try:
        with BackgroundServer(app) as server:
            page = httpx.get(server.url + "/")
    finally:
        state(app).close()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form id="signup">' in page.text and "/jobs/" in page.text


@needs_browser
@pytest.mark.parametrize("mode", FOLLOWS_JOBS)
def test_the_page_follows_both_jobs_to_done_and_shows_the_avatar(mode, fast_sink, browser):
    app = create_app(mode, redis_url=redis_url_for(mode), smtp_host=fast_sink.host, smtp_port=fast_sink.port)
    try:
        with BackgroundServer(app) as server:
            shown = sign_up_in_browser(browser, server.url + "/", "ada@example.com")
            image = browser.find_element("id", "avatar-image")
            assert image.get_attribute("src").endswith("/accounts/ada%40example.com/avatar.png")
            assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    finally:
        state(app).close(timeout=30)
    assert shown == {"avatar": "done", "welcome email": "done"}
    assert [m.recipients for m in fast_sink.inbox] == [("ada@example.com",)]


@needs_browser
@pytest.mark.parametrize("mode", FOLLOWS_JOBS)
def test_the_page_shows_a_failed_job_with_its_error(mode, browser, closed_port):
    # The provider is down. A refused connection is transient: a mode that retries it
    # gets one retry here, so it gives up within the page's wait.
    retries = {"max_retries": 1} if "max_retries" in MODES[mode].options else {}
    app = create_app(mode, redis_url=redis_url_for(mode), smtp_host="127.0.0.1", smtp_port=closed_port, **retries)
    try:
        with BackgroundServer(app) as server:
            shown = sign_up_in_browser(browser, server.url + "/", "grace@example.com")
    finally:
        state(app).close(timeout=30)
    assert shown["avatar"] == "done"
    assert shown["welcome email"].startswith("failed: ")
    assert "Connection refused" in shown["welcome email"]


@needs_browser
def test_the_page_says_what_is_wrong_with_a_taken_address(fast_sink, browser):
    app = create_app("blocking", smtp_host=fast_sink.host, smtp_port=fast_sink.port)
    try:
        with BackgroundServer(app) as server:
            httpx.post(server.url + "/signup", json={"email": "ada@example.com"}, timeout=30)
            browser.get(server.url + "/")
            browser.find_element("id", "email").send_keys("ada@example.com")
            browser.find_element("id", "submit").click()
            from selenium.webdriver.support.ui import WebDriverWait
            answer = WebDriverWait(browser, 30, poll_frequency=0.1).until(
                lambda d: d.find_element("id", "answer").text.startswith("409") and
                d.find_element("id", "answer").text,
                message="the page to show the 409 answer within 30 s")
    finally:
        state(app).close()
    assert answer == "409: ada@example.com already has an account"


@needs_browser
def test_the_page_shows_the_attempt_and_the_last_error_while_a_retry_waits(browser):
    with SmtpSink(delay=0.05, refuse=refuse_first(1)) as sink:
        app = create_app("dramatiq", redis_url=redis_url_for("dramatiq"), smtp_host=sink.host,
                         smtp_port=sink.port, min_backoff=500, max_backoff=1_000)
        try:
            with BackgroundServer(app) as server:
                submit_signup(browser, server.url + "/", "grace@example.com")
                status, detail = wait_for_row(browser, "welcome email",
                                              lambda status, detail: "retry" in detail, "a retry")
                final = wait_until_finished(browser)
                shown = [s for s in recorded(browser) if s.kind == "welcome email"]
        finally:
            state(app).close(timeout=30)
    assert status == "queued"
    assert detail.startswith("attempt 1 failed (SMTPDataError") and "451" in detail
    assert final["welcome email"] == "done"
    assert shown[-1].detail.startswith("attempt 2, done ")
    assert [s.at for s in shown] == sorted(s.at for s in shown)


@pytest.mark.parametrize(("statuses", "ordered"), [
    (["queued", "running", "done"], True),
    (["running", "done"], True),        # queued fell between two polls
    (["queued", "done"], True),         # so did running
    (["queued", "running", "queued", "running", "done"], False),  # a retry: not one attempt's order
    (["done", "running"], False),
    (["queued", "failed"], False),      # not one of the states in order
])
def test_in_order_accepts_missed_states_but_not_a_wrong_order(statuses, ordered):
    from shared.browser import in_order

    assert in_order(statuses) is ordered


def test_plot_shown_draws_one_row_per_job_kind():
    import matplotlib

    matplotlib.use("Agg")
    from shared.browser import Shown, plot_shown

    shown = [Shown(0.1, "welcome email", "queued", "waiting for a worker"),
             Shown(0.3, "welcome email", "running", "attempt 1"),
             Shown(0.5, "welcome email", "done", "attempt 1, done"),
             Shown(0.1, "avatar", "queued", "waiting for a worker")]
    fig = plot_shown(shown, title="t")
    [ax] = fig.axes
    assert [label.get_text() for label in ax.get_yticklabels()] == ["welcome email", "avatar"]
    assert len(ax.patches) == 4
