"""The running example: a signup endpoint that triggers two expensive jobs.

``POST /signup`` with ``{"email": "..."}`` creates an account, then needs a
welcome email (slow SMTP provider) and an avatar thumbnail (CPU work). How
the app runs those jobs is its *mode*:

- ``bare``: no jobs at all, the baseline for how fast the app can answer.
- ``blocking``: the handler runs both jobs, then answers (lesson 01).
- ``nowait``: the handler starts a thread for the jobs and answers at once,
  with no way to learn whether they worked (lesson 01's teaser).

Every answer carries a ``Server-Timing`` header that says where the time went.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from shared import jobs
from shared.accounts import AccountExists, Accounts
from shared.background import FireAndForget
from shared.joblog import JobLog
from shared.validation import MAX_BODY_BYTES, InvalidSignup, parse_signup

MODES = ("bare", "blocking", "nowait")
log = logging.getLogger("shared.app")


class JobFailed(RuntimeError):
    """One of the signup's jobs raised; ``job`` names which."""

    def __init__(self, job: str, error: BaseException) -> None:
        super().__init__(f"{job} job failed: {type(error).__name__}: {error}")
        self.job = job


@dataclass
class SignupJobs:
    """Runs the welcome email and the avatar for one new account, timing each."""

    smtp_host: str
    smtp_port: int
    accounts: Accounts
    joblog: JobLog
    avatar_size: int = 128

    def run(self, request_id: str, email: str) -> dict[str, float]:
        """Run both jobs in order; return their durations in seconds."""
        durations = {}
        with self._step(request_id, "email", durations):
            jobs.send_welcome_email(email, smtp_host=self.smtp_host, smtp_port=self.smtp_port)
        with self._step(request_id, "avatar", durations):
            png = jobs.render_avatar(email, size=self.avatar_size)
        account = self.accounts.get(email)
        if account is not None:
            account.welcomed, account.avatar_png = True, png
        return durations

    def _step(self, request_id: str, name: str, durations: dict[str, float]):
        return _Step(self.joblog.timed(request_id, name), name, durations)


class _Step:
    def __init__(self, timed, name: str, durations: dict[str, float]) -> None:
        self._timed, self._name, self._durations = timed, name, durations

    def __enter__(self) -> None:
        self._timed.__enter__()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._timed.__exit__(exc_type, exc, tb)
        self._durations[self._name] = self._timed.span.seconds
        if exc is not None and isinstance(exc, Exception):
            raise JobFailed(self._name, exc) from exc


@dataclass
class AppState:
    """What a running app holds, for lessons and tests to look at."""

    mode: str
    accounts: Accounts
    joblog: JobLog
    signup_jobs: SignupJobs
    background: FireAndForget = field(default_factory=FireAndForget)


def state(app: Flask) -> AppState:
    return app.extensions["signup"]


def create_app(mode: str = "blocking", *, smtp_host: str = "127.0.0.1", smtp_port: int = 8025,
               avatar_size: int = 128, joblog: JobLog | None = None) -> Flask:
    """Build the signup app. ``smtp_host``/``smtp_port`` point at the mail provider."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    app = Flask("shared.app")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    accounts, joblog = Accounts(), joblog if joblog is not None else JobLog()
    app.extensions["signup"] = AppState(
        mode, accounts, joblog, SignupJobs(smtp_host, smtp_port, accounts, joblog, avatar_size))
    _add_routes(app)
    return app


def _add_routes(app: Flask) -> None:
    @app.get("/health")
    def health():
        return jsonify(status="ok", mode=state(app).mode)

    @app.post("/signup")
    def signup():
        return _signup(state(app))

    @app.get("/accounts/<email>/avatar.png")
    def avatar(email: str):
        account = state(app).accounts.get(email)
        if account is None or account.avatar_png is None:
            return jsonify(error=f"no avatar for {email!r} (yet)"), 404
        return Response(account.avatar_png, mimetype="image/png")

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
    timing = ServerTiming()
    try:
        with timing.measure("validate"):
            email = parse_signup(request.content_type, request.get_data(cache=False))
        with timing.measure("account"):
            app_state.accounts.create(email)
    except InvalidSignup as exc:
        return _answer({"error": str(exc)}, exc.status, request_id, timing)
    except AccountExists:
        return _answer({"error": f"{email} already has an account"}, 409, request_id, timing)

    if app_state.mode == "blocking":
        try:
            timing.update(app_state.signup_jobs.run(request_id, email))
        except JobFailed as exc:
            return _answer({"email": email, "error": str(exc)}, 502, request_id, timing)
        return _answer({"email": email, "welcome_email": "sent", "avatar": "ready"},
                       201, request_id, timing)
    if app_state.mode == "nowait":
        with timing.measure("start_thread"):
            app_state.background.submit(app_state.signup_jobs.run, request_id, email)
        return _answer({"email": email, "jobs": "started; nobody will tell you how they went"},
                       202, request_id, timing)
    return _answer({"email": email}, 201, request_id, timing)


def _answer(body: dict, status: int, request_id: str, timing: "ServerTiming"):
    response = jsonify(body)
    response.status_code = status
    response.headers["X-Request-ID"] = request_id
    response.headers["Server-Timing"] = timing.header()
    return response


class ServerTiming:
    """Collects named durations and renders them as a ``Server-Timing`` header."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def measure(self, name: str):
        return _Measure(self, name)

    def update(self, durations: dict[str, float]) -> None:
        self.durations.update(durations)

    def header(self) -> str:
        return ", ".join(f"{name};dur={seconds * 1000:.1f}"
                         for name, seconds in self.durations.items())


class _Measure:
    def __init__(self, timing: ServerTiming, name: str) -> None:
        self._timing, self._name = timing, name

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc_info) -> None:
        self._timing.durations[self._name] = time.perf_counter() - self._start
