import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from flask import Flask

from shared.net import closed_port
from shared.web import BackgroundServer, PortInUse, free_port


def _recording_app(seconds: float = 0.2):
    """An app whose one route sleeps and records when each request was handled."""
    app = Flask(__name__)
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    @app.get("/slow")
    def slow():
        start = time.perf_counter()
        time.sleep(seconds)
        with lock:
            spans.append((start, time.perf_counter()))
        return "done"

    return app, spans


def _hit_at_once(url: str, n: int) -> list[int]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: httpx.get(url, timeout=10).status_code, range(n)))


def _overlaps(spans):
    spans = sorted(spans)
    return sum(1 for (_, end), (start, _) in zip(spans, spans[1:]) if start < end)


def test_single_threaded_server_handles_one_request_at_a_time():
    app, spans = _recording_app()
    with BackgroundServer(app, threaded=False) as server:
        assert _hit_at_once(server.url + "/slow", 4) == [200] * 4
    assert len(spans) == 4
    assert _overlaps(spans) == 0


def test_threaded_server_handles_requests_side_by_side():
    app, spans = _recording_app()
    with BackgroundServer(app, threaded=True) as server:
        assert _hit_at_once(server.url + "/slow", 4) == [200] * 4
    assert len(spans) == 4
    assert _overlaps(spans) >= 1


def _serving_threads(port: int) -> list[threading.Thread]:
    """The live threads a BackgroundServer on ``port`` serves from (by their name)."""
    return [t for t in threading.enumerate() if t.name == f"wsgi-{port}" and t.is_alive()]


def test_stop_frees_the_port_and_ends_the_thread():
    # Only this server's own thread counts: other tests' daemon threads come and go.
    app, _ = _recording_app()
    server = BackgroundServer(app).start()
    port = server.port
    assert len(_serving_threads(port)) == 1
    server.stop()
    server.stop()  # idempotent
    assert _serving_threads(port) == []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # would fail if still held


def test_a_taken_port_raises_port_in_use_naming_the_fix(taken_port):
    with pytest.raises(PortInUse) as error:
        BackgroundServer(Flask(__name__), port=taken_port).start()
    assert f"Port {taken_port}" in str(error.value)
    assert f"PORT={taken_port + 1}" in str(error.value)


def test_requests_are_not_logged_to_stderr(capfd):
    app, _ = _recording_app(seconds=0)
    seen = []
    with BackgroundServer(app, on_request=lambda *a: seen.append(a)) as server:
        httpx.get(server.url + "/slow")
    assert capfd.readouterr().err == ""
    assert seen == [("GET", "/slow", 200)]


def test_free_port_is_bindable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free_port()))


def test_a_closed_port_refuses_connections_and_no_one_else_can_take_it():
    with closed_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with pytest.raises(PortInUse):
            BackgroundServer(Flask(__name__), port=port).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # released when the block ends
