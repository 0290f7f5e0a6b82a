import time

import httpx
import pytest

from shared.app import create_app, state
from shared.web import BackgroundServer, free_port


@pytest.fixture
def serve(sink):
    """Start the app in a mode on a real threaded server; stop it afterwards."""
    running = []

    def start(mode, **options):
        options.setdefault("smtp_host", sink.host)
        options.setdefault("smtp_port", sink.port)
        app = create_app(mode, **options)
        server = BackgroundServer(app, threaded=True).start()
        running.append((app, server))
        return app, server.url

    yield start
    for app, server in running:
        server.stop()
        assert state(app).background.wait(timeout=10)


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
    assert timing["email"] >= sink.delay
    assert timing["avatar"] > 0
    assert httpx.get(url + "/accounts/ada@example.com/avatar.png").headers["content-type"] \
        == "image/png"
    spans = state(app).joblog.spans()
    assert [s.name for s in spans] == ["email", "avatar"]
    assert {s.request_id for s in spans} == {response.headers["X-Request-ID"]}


def test_request_id_is_echoed(serve):
    _, url = serve("bare")
    response = httpx.post(url + "/signup", json={"email": "ada@example.com"},
                          headers={"X-Request-ID": "r42"})
    assert response.headers["X-Request-ID"] == "r42"


def test_bare_signup_runs_no_job(serve, sink):
    app, url = serve("bare")
    assert _signup(url).status_code == 201
    assert sink.inbox == []
    assert state(app).accounts.get("ada@example.com") is not None


def test_nowait_answers_before_the_email_is_delivered(serve, sink):
    app, url = serve("nowait")
    response = _signup(url)
    answered = time.time()
    assert response.status_code == 202
    assert state(app).background.wait(timeout=10)
    [message] = sink.inbox
    assert message.received_at > answered  # the client had its answer first
    assert state(app).accounts.get("ada@example.com").avatar_png


def test_a_down_provider_is_a_502_when_blocking(serve):
    _, url = serve("blocking", smtp_port=free_port())
    response = _signup(url)
    assert response.status_code == 502
    assert "email job failed" in response.json()["error"]


def test_a_down_provider_is_invisible_to_the_client_when_not_waiting(serve):
    app, url = serve("nowait", smtp_port=free_port())
    assert _signup(url).status_code == 202
    assert state(app).background.wait(timeout=10)
    [error] = state(app).background.errors
    assert "email job failed" in error
    [span] = state(app).joblog.spans()
    assert not span.ok


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
    _, url = serve("blocking")
    response = httpx.post(url + "/signup", **kwargs)
    assert response.status_code == status
    assert response.json()["error"]
    assert sink.inbox == []


def test_a_second_signup_with_the_same_address_is_a_conflict(serve):
    _, url = serve("bare")
    assert _signup(url).status_code == 201
    second = _signup(url, "ADA@example.com")
    assert second.status_code == 409
    assert "already" in second.json()["error"]


def test_unknown_routes_and_methods_answer_json(serve):
    _, url = serve("bare")
    assert httpx.get(url + "/nope").json()["error"]
    assert httpx.get(url + "/signup").status_code == 405
    assert httpx.get(url + "/health").json() == {"status": "ok", "mode": "bare"}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="blocking"):
        create_app("eventually")
