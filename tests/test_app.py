"""The signup app's routes, in the modes lesson 01 uses."""

import httpx
import pytest

from shared.app import create_app, state
from shared.modes import redis_url_for
from shared.smtp_sink import SmtpSink
from shared.web import BackgroundServer


@pytest.fixture
def serve(sink):
    """Start the app in a mode on a real threaded server; stop and close it afterwards."""
    running = []

    def start(mode, **options):
        options.setdefault("smtp_host", sink.host)
        options.setdefault("smtp_port", sink.port)
        app = create_app(mode, redis_url=redis_url_for(mode), **options)
        server = BackgroundServer(app, threaded=True).start()
        running.append((app, server))
        return app, server.url

    yield start
    for app, server in running:
        server.stop()
        assert state(app).close(timeout=10).unfinished == 0


def _signup(url, email="ada@example.com"):
    return httpx.post(url + "/signup", json={"email": email}, timeout=10)


def _server_timing(response) -> dict[str, float]:
    parts = (item.strip().split(";dur=") for item in response.headers["Server-Timing"].split(","))
    return {name: float(ms) / 1000 for name, ms in parts}


def test_blocking_signup_answers_after_both_jobs(serve, sink):
    app, url = serve("blocking")
    response = _signup(url)
    assert response.status_code == 201
    assert response.json() == {"email": "ada@example.com", "welcome_email": "sent",
                               "avatar": "ready"}
    assert [m.recipients for m in sink.inbox] == [("ada@example.com",)]
    timing = _server_timing(response)
    assert timing["welcome_email"] >= sink.delay
    assert timing["avatar"] > 0
    avatar = httpx.get(url + "/accounts/ada@example.com/avatar.png")
    assert avatar.headers["content-type"] == "image/png"
    assert avatar.content.startswith(b"\x89PNG")
    spans = state(app).store.spans()
    assert [s.name for s in spans] == ["welcome_email", "avatar"]
    assert {s.request_id for s in spans} == {response.headers["X-Request-ID"]}


def test_request_id_is_echoed_but_job_ids_are_the_servers(serve):
    app, url = serve("blocking")
    response = httpx.post(url + "/signup", json={"email": "ada@example.com"},
                          headers={"X-Request-ID": "r42"}, timeout=10)
    assert response.headers["X-Request-ID"] == "r42"
    jobs = state(app).store.jobs()
    assert [job.request_id for job in jobs] == ["r42", "r42"]
    assert len({job.id for job in jobs}) == 2 and "r42" not in {job.id for job in jobs}


def test_bare_signup_runs_no_job(serve, sink):
    app, url = serve("bare")
    assert _signup(url).status_code == 201
    assert sink.inbox == []
    assert state(app).store.account("ada@example.com") is not None
    assert state(app).store.jobs() == []


def test_nowait_answers_before_the_email_is_delivered_and_gives_no_ids(serve):
    with SmtpSink(delay=3.0) as slow:  # 3 s: the answer surely comes first, even on a busy box
        app, url = serve("nowait", smtp_port=slow.port)
        response = _signup(url)
        assert response.status_code == 202
        assert isinstance(response.json()["jobs"], str)  # no ids: that is its point
        assert slow.inbox == []
        assert state(app).runner.wait(timeout=30)
        [message] = slow.inbox
    assert message.recipients == ("ada@example.com",)
    assert state(app).store.avatar("ada@example.com")


def test_a_down_provider_is_a_502_when_blocking(serve, closed_port):
    app, url = serve("blocking", smtp_port=closed_port)
    response = _signup(url)
    assert response.status_code == 502
    assert "welcome_email job failed: ConnectionRefusedError" in response.json()["error"]
    assert [job.status for job in state(app).store.jobs()] == ["failed", "done"]


def test_a_down_provider_is_invisible_to_the_client_when_not_waiting(serve, closed_port):
    app, url = serve("nowait", smtp_port=closed_port)
    assert _signup(url).status_code == 202
    assert state(app).runner.wait(timeout=10)
    [error] = state(app).runner.errors
    assert error.startswith("welcome_email job failed: ConnectionRefusedError")
    failed = [span for span in state(app).store.spans() if not span.ok]
    assert [span.name for span in failed] == ["welcome_email"]


def test_an_unknown_job_id_is_a_json_404(serve):
    _, url = serve("blocking")
    response = httpx.get(url + "/jobs/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


@pytest.mark.parametrize("kwargs, status", [
    ({"content": b'{"email": "ada@example.com"}', "headers": {"Content-Type": "text/plain"}}, 415),
    ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400),
    ({"json": [1, 2]}, 400),
    ({"json": {}}, 400),
    ({"json": {"email": "nope"}}, 400),
    ({"content": b"\xff", "headers": {"Content-Type": "application/json"}}, 400),
    ({"content": b"{" + b" " * 5000 + b"}", "headers": {"Content-Type": "application/json"}}, 413),
])
def test_bad_input_gets_a_4xx_with_a_json_error(serve, sink, kwargs, status):
    app, url = serve("blocking")
    response = httpx.post(url + "/signup", **kwargs)
    assert response.status_code == status
    assert response.json()["error"]
    assert sink.inbox == []
    assert state(app).store.jobs() == []


def test_a_second_signup_with_the_same_address_is_a_conflict(serve):
    app, url = serve("bare")
    assert _signup(url).status_code == 201
    second = _signup(url, "ADA@example.com")
    assert second.status_code == 409
    assert "already" in second.json()["error"]


def test_unknown_routes_and_methods_answer_json(serve):
    _, url = serve("bare")
    assert httpx.get(url + "/nope").json()["error"]
    wrong_method = httpx.get(url + "/signup")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]
    assert httpx.get(url + "/health").json() == {"status": "ok", "mode": "bare"}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="blocking"):
        create_app("eventually")


def test_each_app_gets_a_fresh_store_removed_on_close():
    first, second = create_app("bare"), create_app("bare")
    path = state(first).store.path
    assert path != state(second).store.path
    for app in (first, second):
        state(app).close()
    assert not path.exists()


def test_an_option_the_mode_does_not_take_is_refused_by_name():
    with pytest.raises(ValueError, match="the blocking mode has no option workers"):
        create_app("blocking", workers=4)


def test_a_mode_that_queues_in_redis_asks_for_a_redis_url_by_name():
    with pytest.raises(ValueError, match=r"redis_url=shared\.redis_server\.redis_url\(\)"):
        create_app("redis-queue")
