"""A real RabbitMQ: shared.rabbitmq_server finds or starts one; the course's actors run on it.

The tests that need a server share one node booted for this module (10-15 s) and
skip, with the reason, where none can be had (no RABBITMQ_URL, no rabbitmq-server).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import rabbitmq_server
from shared.modes.dramatiq.broker import (RABBITMQ_MAX_PRIORITY, BrokerConfig, job_message,
                                          make_broker, rabbitmq_broker)
from shared.production.rabbit import RabbitLab, durable, peek, requeued_on_close, waiting
from shared.rabbitmq_server import (BackgroundRabbit, RabbitServer, RabbitUnavailable,
                                    rabbitmq_problem, start_in_background, url_problem)

BOOT_DEADLINE = 180.0  # a busy CI machine boots RabbitMQ in far more than its usual 10-15 s
NO_RABBITMQ = rabbitmq_problem()


@pytest.fixture(scope="module")
def rabbit() -> Iterator[BackgroundRabbit]:
    """One RabbitMQ for the module: RABBITMQ_URL's, or a node started here and checked gone after."""
    if NO_RABBITMQ is not None:
        pytest.skip(NO_RABBITMQ)
    booting = start_in_background()
    booting.wait(BOOT_DEADLINE)
    yield booting
    server, folder = booting.server, booting.server.folder if booting.server else None
    booting.stop()
    if server is not None:
        assert booting.leftovers() == [], f"processes of RabbitMQ left running: {booting.leftovers()}"
        assert folder is not None and not folder.exists(), "its temporary folder was not removed"
        assert not _listening(server.ports.amqp) and not _listening(server.ports.epmd), \
            "a port of the stopped node still answers"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- without a server -------------------------------------------------------------------


def test_without_url_or_binary_the_reason_names_the_fix(monkeypatch):
    monkeypatch.delenv("RABBITMQ_URL", raising=False)
    monkeypatch.setattr(rabbitmq_server, "server_script", lambda: None)
    problem = rabbitmq_problem()
    assert problem is not None and "apt-get install rabbitmq-server" in problem
    booting = start_in_background()
    with pytest.raises(RabbitUnavailable, match="set RABBITMQ_URL"):
        booting.wait(10)
    assert not booting.started_here and booting.leftovers() == []
    booting.stop()


def test_a_rabbitmq_url_that_does_not_answer_is_refused_with_its_problem(monkeypatch, closed_port):
    monkeypatch.setenv("RABBITMQ_URL", f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")
    assert rabbitmq_problem() is None  # a URL is a promise; waiting checks it
    booting = start_in_background()
    with pytest.raises(RabbitUnavailable, match="RABBITMQ_URL does not answer"):
        booting.wait(30)
    assert not booting.started_here
    booting.stop()


def test_the_start_script_is_the_nodes_own_not_debians_user_switching_wrapper():
    script = rabbitmq_server.server_script()
    if script is None:
        pytest.skip(f"no rabbitmq-server installed: {rabbitmq_server.INSTALL_HINT}")
    assert script.name == "rabbitmq-server"
    assert "su rabbitmq" not in script.read_text(errors="replace")


def test_the_broker_recipe_picks_rabbitmq_by_url_and_the_workers_learn_it_from_one_variable(
        redis_url):
    assert "DEFER_DRAMATIQ_URL" not in BrokerConfig.fresh().to_env()  # Redis: as before
    config = BrokerConfig.fresh(url="amqp://guest:guest@127.0.0.1:5672/%2F")
    assert BrokerConfig.from_env(config.to_env()) == config
    broker = make_broker(redis_url, config)  # RabbitmqBroker connects on first use only
    try:
        assert [c.__name__ for c in type(broker).__mro__[1:3]] == ["RabbitmqBroker", "Broker"]
        assert broker.max_priority == RABBITMQ_MAX_PRIORITY and broker.confirm_delivery
        assert broker.get_results_backend().client.ping()  # results stay in Redis
    finally:
        broker.close()
    with pytest.raises(ValueError, match="not a RabbitMQ URL"):
        rabbitmq_broker(redis_url, redis_url, config)


# -- with a server ----------------------------------------------------------------------


def test_the_server_accepts_amqp_on_loopback_and_runs_its_own_epmd(rabbit):
    url = rabbit.wait(1)
    assert url_problem(url) is None
    if rabbit.server is None:
        pytest.skip("RABBITMQ_URL's server: not ours to inspect")
    names = {p.name() for p in rabbit.server.processes()}
    assert {"epmd", "beam.smp"} <= names, names
    assert isinstance(rabbit.server.folder, Path) and rabbit.server.folder.is_dir()


def test_a_boot_under_way_is_cut_short_by_stop_and_leaves_nothing(monkeypatch):
    """A lesson closed before RabbitMQ was up must not wait out the boot's deadline."""
    if NO_RABBITMQ is not None:
        pytest.skip(NO_RABBITMQ)
    monkeypatch.delenv(rabbitmq_server.ENV_VAR, raising=False)
    booting = start_in_background()
    deadline = time.monotonic() + 10
    while booting._booting is None or not booting._booting.processes():
        assert time.monotonic() < deadline, "waited 10 s for the node's processes to start"
        time.sleep(0.05)
    server, started = booting._booting, time.monotonic()
    booting.stop()
    assert time.monotonic() - started < 30, "stop() waited for the boot instead of cutting it short"
    with pytest.raises(RabbitUnavailable, match="stopped while it booted|did not start"):
        booting.wait(1)
    assert server.leftovers() == [], f"processes of RabbitMQ left running: {server.leftovers()}"


def test_a_second_server_gets_its_own_node_and_ports():
    if NO_RABBITMQ is not None:
        pytest.skip(NO_RABBITMQ)
    first, second = RabbitServer(), RabbitServer()
    assert first.node != second.node
    assert len({*vars(first.ports).values(), *vars(second.ports).values()}) == 6


def test_the_course_actors_run_on_rabbitmq_in_broker_priority_order_and_leave_nothing(
        rabbit, redis_url, fast_sink):
    lab = RabbitLab(rabbit.wait(1), redis_url, smtp_host=fast_sink.host, smtp_port=fast_sink.port)
    broker = make_broker(redis_url, lab.config)
    emails = [f"user{n}@example.com" for n in range(1, 5)]
    try:
        for email in emails:
            for job in lab.signup(email):
                message = job_message(job)
                if email == emails[-1]:
                    message = message.copy(options={"broker_priority": RABBITMQ_MAX_PRIORITY})
                broker.enqueue(message)
        assert (waiting(broker, "email"), waiting(broker, "avatars")) == (4, 4)
        first = peek(broker, "email")
        assert (first.actor_name, first.priority, first.persistent) == (
            "welcome_email", RABBITMQ_MAX_PRIORITY, True)
        is_durable, answer = durable(broker, "email")
        assert is_durable and "PRECONDITION_FAILED" in answer
        requeue = requeued_on_close(broker, "email")
        assert (requeue.before, requeue.held, requeue.after) == (4, 3, 4)
        lab.start_workers(timeout=60)
        lab.wait_finished(8, timeout=60)
        assert lab.store.counts() == {"queued": 0, "running": 0, "done": 8, "failed": 0}
        for kind in ("welcome_email", "avatar"):
            assert lab.started_order(kind)[0].email == emails[-1]
        assert lab.store_file_open() == 1
    finally:
        left = lab.stop(broker)
    assert left == {"queues": 0, "redis keys": 0, "processes": 0}
