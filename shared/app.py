"""The running example: a signup endpoint that triggers two expensive jobs.

``POST /signup`` with ``{"email": "..."}`` creates an account, and with it two
jobs: a welcome email (a slow SMTP provider) and an avatar thumbnail (CPU
work). How those jobs run is the app's *mode*, one module of
:mod:`shared.modes` each; this module holds only the routes.

- ``bare``: no jobs at all, the baseline for how fast the app can answer.
- ``blocking``: the handler runs both jobs, then answers ``201`` (or ``502``).
- ``nowait``: a thread per job, and an immediate ``202`` with no job ids.
- Every later mode answers ``202`` with the job ids; ``GET /jobs/<id>`` tells
  how each job is doing.

Every answer carries a ``Server-Timing`` header that says where the time went.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.job import new_jobs
from shared.modes import Closed, QueueFull, Runner, runner_class
from shared.settings import Settings
from shared.store import AccountExists, Store
from shared.validation import MAX_BODY_BYTES, InvalidSignup, parse_signup

log = logging.getLogger("shared.app")
SIGNUP_PAGE = Path(__file__).parent / "static" / "signup.html"


@dataclass
class AppState:
    """What a running app holds, for lessons and tests to look at."""

    mode: str
    settings: Settings
    store: Store
    runner: Runner
    owns_store: bool = True

    def close(self, timeout: float = 10.0) -> Closed:
        """Let the runner finish or hand back its jobs, then drop the store."""
        closed = self.runner.close(timeout)
        if self.owns_store:
            self.store.remove()
        return closed


def state(app: Flask) -> AppState:
    return app.extensions["signup"]


def create_app(mode: str = "blocking", *, smtp_host: str = "127.0.0.1", smtp_port: int = 8025,
               redis_url: str = "", settings: Settings | None = None, store: Store | None = None,
               **options: object) -> Flask:
    """Build the signup app in ``mode``, with a fresh store unless given one.

    ``smtp_host``/``smtp_port`` point at the mail provider (or pass whole
    ``settings``). A mode that queues jobs in Redis needs ``redis_url``
    (``shared.redis_server.redis_url()`` finds or starts one; or set it in
    ``settings``). Other keyword arguments are the mode's own options, such
    as ``workers=4`` (see ``Runner.options``).
    """
    runner_type = runner_class(mode)
    runner_type.check_options(options)
    settings = settings or Settings(smtp_host=smtp_host, smtp_port=smtp_port)
    redis = redis_url or settings.redis_url
    if "redis" in runner_type.needs and not redis:
        raise ValueError(f"the {mode} mode keeps its jobs in Redis: pass "
                         f"redis_url=shared.redis_server.redis_url() (it finds or starts one)")
    owns_store = store is None
    store = store if store is not None else Store.fresh()
    settings = replace(settings, store_path=str(store.path), redis_url=redis)
    runner = runner_type(store, settings, **options)
    app = Flask("shared.app")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["signup"] = AppState(mode, settings, store, runner, owns_store)
    _add_routes(app)
    return app


def _add_routes(app: Flask) -> None:
    @app.get("/")
    def signup_page():
        """A form that posts to /signup, then follows each job's status (no reload)."""
        return Response(SIGNUP_PAGE.read_bytes(), mimetype="text/html")

    @app.get("/health")
    def health():
        return jsonify(status="ok", mode=state(app).mode)

    @app.post("/signup")
    def signup():
        return _signup(state(app))

    @app.get("/jobs/<job_id>")
    def job_status(job_id: str):
        status = state(app).runner.status(job_id)
        if status is None:
            return jsonify(error=f"no job with id {job_id!r}"), 404
        return jsonify(status.public())

    @app.get("/accounts/<email>/avatar.png")
    def avatar(email: str):
        png = state(app).store.avatar(email)
        if png is None:
            return jsonify(error=f"no avatar for {email!r} (yet)"), 404
        return Response(png, mimetype="image/png")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            return jsonify(error=f"the body is larger than {MAX_BODY_BYTES} bytes"), 413
        return jsonify(error=exc.description), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return jsonify(error="internal error"), 500


def _signup(app_state: AppState):
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:8]
    runner, timing = app_state.runner, ServerTiming()
    try:
        with timing.measure("validate"):
            email = parse_signup(request.content_type, request.get_data(cache=False))
        with timing.measure("account"):
            if runner.kinds:
                runner.admit()  # load shedding refuses here, before anything is written
            jobs = new_jobs(email, request_id, runner.kinds)
            # With an outbox, the jobs' rows are written in the account's transaction.
            app_state.store.create_account(email, jobs,
                                           outbox=getattr(runner, "uses_outbox", False))
    except InvalidSignup as exc:
        return _answer({"error": str(exc)}, exc.status, request_id, timing)
    except AccountExists:
        return _answer({"error": f"{email} already has an account"}, 409, request_id, timing)
    except QueueFull as exc:
        return _refused(exc, request_id, timing)

    if not jobs:
        return _answer({"email": email}, 201, request_id, timing)
    if runner.handler_waits:
        return _run_then_answer(app_state, email, jobs, request_id, timing)
    try:
        with timing.measure("enqueue"):
            runner.submit_all(jobs)
    except QueueFull as exc:
        # Undo the signup, so that the client's retry is a fresh signup, not a 409.
        app_state.store.forget_signup(email, [job.id for job in jobs])
        return _refused(exc, request_id, timing)
    if not runner.tells_job_ids:
        return _answer({"email": email, "jobs": "started; nobody will tell you how they went"},
                       202, request_id, timing)
    return _answer({"email": email, "jobs": {job.kind: job.id for job in jobs}},
                   202, request_id, timing)


def _run_then_answer(app_state: AppState, email: str, jobs: list, request_id: str,
                     timing: ServerTiming):
    failed = []
    for job in jobs:
        app_state.runner.submit(job)  # runs it, here and now
        status = app_state.store.job(job.id)
        if status is None:  # run_job records every job it runs: this is a bug, not bad input
            raise RuntimeError(f"job {job.id} ran but is not in {app_state.store}")
        timing.durations[job.kind] = status.seconds or 0.0
        if status.status == "failed":
            failed.append(f"{job.kind} job failed: {status.error}")
    if failed:
        return _answer({"email": email, "error": "; ".join(failed)}, 502, request_id, timing)
    return _answer({"email": email, "welcome_email": "sent", "avatar": "ready"},
                   201, request_id, timing)


def _refused(exc: QueueFull, request_id: str, timing: ServerTiming):
    """503 with ``Retry-After``: the runner is overloaded; a retry later is a fresh signup."""
    response = _answer({"error": f"{exc}; try again in {exc.retry_after} s"}, 503,
                       request_id, timing)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _answer(body: dict, status: int, request_id: str, timing: ServerTiming):
    response = jsonify(body)
    response.status_code = status
    response.headers["X-Request-ID"] = request_id
    response.headers["Server-Timing"] = timing.header()
    return response


class ServerTiming:
    """Collects named durations and renders them as a ``Server-Timing`` header."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def measure(self, name: str) -> _Measure:
        return _Measure(self.durations, name)

    def header(self) -> str:
        return ", ".join(f"{name};dur={seconds * 1000:.1f}"
                         for name, seconds in self.durations.items())


class _Measure:
    """Adds the enclosed block's duration to ``durations[name]``."""

    def __init__(self, durations: dict[str, float], name: str) -> None:
        self._durations, self._name = durations, name

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc_info) -> None:
        self._durations[self._name] = time.perf_counter() - self._start
